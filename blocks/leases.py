"""The lease of a stream in the checkpoint store: one run at a time may upload it. A
mixin of CheckpointStore (blocks/checkpoints.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blocks.redis_support import RELEASE, RENEW, TAKE_OVER, unavailable
from stream_ingest.errors import LeaseLost

if TYPE_CHECKING:
    from blocks.checkpoints import CheckpointStore


class Leases:
    """`{ns}:stream:{id}:lease`: take, renew, take over from a dead run, release."""

    @unavailable
    def acquire_lease(self: CheckpointStore, stream_id: str, token: str, ttl: float) -> bool:
        """Take the stream's lease, or keep it if `token` already holds it."""
        return bool(
            self._script("renew", RENEW)(
                keys=[self.lease_key(stream_id)], args=[token, int(ttl * 1000)]
            )
        )

    def renew_lease(self: CheckpointStore, stream_id: str, token: str, ttl: float) -> None:
        if not self.acquire_lease(stream_id, token, ttl):
            raise LeaseLost(stream_id)

    @unavailable
    def take_over_lease(
        self: CheckpointStore, stream_id: str, holder: str, token: str, ttl: float
    ) -> bool:
        """Replace `holder`'s lease with ours, only if `holder` still has it."""
        args = [holder, token, int(ttl * 1000)]
        return bool(
            self._script("take_over", TAKE_OVER)(keys=[self.lease_key(stream_id)], args=args)
        )

    @unavailable
    def release_lease(self: CheckpointStore, stream_id: str, token: str) -> None:
        self._script("release", RELEASE)(keys=[self.lease_key(stream_id)], args=[token])

    @unavailable
    def lease_holder(self: CheckpointStore, stream_id: str) -> str | None:
        holder = self.redis_client.get(self.lease_key(stream_id))
        return holder.decode() if holder else None
