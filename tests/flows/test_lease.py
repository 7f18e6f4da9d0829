"""The lease keeper against a private redis-server: it renews while the stream's
thread beats, and lets the lease expire, saying where the thread waits, once it
stops beating (a stuck stream)."""

from __future__ import annotations

import time

from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.flows import stopping
from stream_ingest.flows.lease import LeaseKeeper


def _hung_read(seconds: float) -> None:
    time.sleep(seconds)  # stands in for a read on a hung mount


def test_a_beating_stream_keeps_its_lease_and_a_stuck_one_lets_it_go(store: CheckpointStore):
    sid, token = "s-stuck", "run-1"
    assert store.leases.acquire(sid, token, 2)
    try:
        with LeaseKeeper(store, sid, token, ttl=2, stuck_after=1.0) as keeper:
            until = time.monotonic() + 3  # longer than the TTL: renewals hold it
            while time.monotonic() < until:
                keeper.check()
                time.sleep(0.1)
            assert store.leases.holder(sid) == token
            assert token not in stopping.stuck()

            _hung_read(4.5)  # no beat: stuck after 1 s, the lease gone 2 s later

            assert "_hung_read" in keeper.stuck
            assert "no progress" in stopping.stuck()[token]
            assert store.leases.holder(sid) is None
            assert store.leases.acquire(sid, "run-2", 30)  # a rerun takes the stream over
        assert store.leases.holder(sid) == "run-2"  # the stuck run's exit leaves it be
    finally:
        stopping.withdraw(token)
