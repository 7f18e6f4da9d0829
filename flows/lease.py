"""Keeps a stream's lease alive from a background thread while the run works."""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType

from blocks.checkpoints import CheckpointStore
from stream_ingest.errors import CheckpointUnavailable, LeaseLost


class LeaseKeeper:
    """Renews every ttl/3. A renewal refused because another run holds the lease
    sets `lost`; Redis being briefly unreachable does not (nobody else can take the
    lease then, and the lease-fenced checkpoint write catches a real takeover)."""

    def __init__(self, store: CheckpointStore, stream_id: str, token: str, ttl: float) -> None:
        self.store, self.stream_id, self.token, self.ttl = store, stream_id, token, ttl
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{stream_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.store.renew_lease(self.stream_id, self.token, self.ttl)
            except LeaseLost:
                self.lost = True
                return
            except CheckpointUnavailable:
                continue

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(self.stream_id)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(CheckpointUnavailable):  # it expires by itself
            self.store.release_lease(self.stream_id, self.token)
