"""The lease of a stream in the checkpoint store: one run at a time may upload it. A
mixin of CheckpointStore (stream_ingest/blocks/checkpoints.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream_ingest.blocks.redis_support import RELEASE, RENEW, TAKE_OVER, unavailable
from stream_ingest.errors import LeaseLost

if TYPE_CHECKING:
    from stream_ingest.blocks.checkpoints import CheckpointStore


# A run that found the lease held leaves this much time for the holder to notice.
ASK_AGAIN_TTL_SECONDS = 24 * 3600


class Leases:
    """`{ns}:stream:{id}:lease`: take, renew, take over from a dead run, release; and
    `{ns}:stream:{id}:ask-again`: a run that found the lease held asks its holder to
    look at the file again once it lets go (a change it may not have seen)."""

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

    def ask_again_key(self: CheckpointStore, stream_id: str) -> str:
        return f"{self.namespace}:stream:{stream_id}:ask-again"

    @unavailable
    def ask_again(self: CheckpointStore, stream_id: str) -> None:
        """Another run holds the lease: ask it to look at the file again when it ends."""
        self.redis_client.set(self.ask_again_key(stream_id), 1, ex=ASK_AGAIN_TTL_SECONDS)

    @unavailable
    def take_ask_again(self: CheckpointStore, stream_id: str) -> bool:
        """Whether a run asked since (and the request is consumed: one look answers it)."""
        return self.redis_client.getdel(self.ask_again_key(stream_id)) is not None
