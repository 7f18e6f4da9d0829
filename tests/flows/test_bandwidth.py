"""The bandwidth limit in a process (stream_ingest/flows/pacing.py) and across processes
(the host's bucket in Redis), and two streams uploading under it. Rates are asserted
on the limiter's own accounting against a fake clock; wall time only as a lower bound
(a slow machine makes an upload slower, never faster: the real rate is benchmarks/
bandwidth.py's)."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from stream_ingest.bandwidth import CREDIT_BYTES, GRANT_BYTES, MIB, Kind, capacity
from stream_ingest.blocks.bandwidth import HostBucket
from stream_ingest.flows import pacing
from stream_ingest.flows.ingest import stream_ingest
from stream_ingest.flows.pacing import LIMITER, Follower, Limiter
from tests.conftest import edit_config
from tests.flows.helpers import object_bytes, payload

RATE = 8_000_000.0


class FakeTime:
    """A clock that a sleep moves forward. Grants are taken one at a time, so the
    sleeps of the limiter's turns never overlap."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()
        self.gate = threading.Event()  # the first sleep waits until every sender waits
        self.gate.set()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.gate.wait(30)
        with self._lock:
            self.now += max(0.0, seconds)


def _streams(
    limiter: Limiter, fake: FakeTime, plan: dict[str, tuple[Kind, int, int]]
) -> Counter[str]:
    """Each stream sends parts of `size` with `width` threads, all waiting from the
    start, until the fake clock is past 60 s; returns the bytes granted to each
    stream in that minute."""
    got: Counter[str] = Counter()
    fake.gate.clear()
    queue = limiter._queue
    granted = queue.granted

    def counted(key: str, size: int) -> None:  # under the limiter's lock
        if fake.now < 60.0:
            got[key] += size
        granted(key, size)

    queue.granted = counted  # type: ignore[method-assign]

    give_up = time.monotonic() + 60  # a limiter that never waits fails, not hangs

    def sender(key: str, kind: Kind, size: int, until: float) -> None:
        while fake.now < until and time.monotonic() < give_up:
            limiter.acquire(key, kind, size)

    threads = []
    for key, (kind, size, width) in plan.items():
        for _ in range(width):
            threads.append(threading.Thread(target=sender, args=(key, kind, size, 60.0)))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while set(limiter.waiting()) != set(plan) and time.monotonic() < deadline:
        time.sleep(0.001)
    fake.gate.set()
    for t in threads:
        t.join(60)
    return got


def test_streams_share_the_limit_equally_and_the_total_holds():
    fake = FakeTime()
    limiter = Limiter(clock=fake.clock, sleep=fake.sleep)
    limiter.set_rate(RATE)
    # Different part sizes and parts in flight: the shares are still equal.
    plan = {
        "a": (Kind.LIVE, 8 * MIB, 4),
        "b": (Kind.LIVE, 5 * MIB, 1),
        "c": (Kind.LIVE, 16 * MIB, 2),
        "d": (Kind.LIVE, 8 * MIB, 8),
    }
    got = _streams(limiter, fake, plan)
    # Granted in the fake minute: the rate's bytes, plus the one burst of a full bucket
    # and the grant whose wait the minute's end cut short.
    assert sum(got.values()) <= RATE * 60 + capacity(RATE) + GRANT_BYTES
    assert sum(got.values()) >= RATE * 60 - 2 * GRANT_BYTES
    # Apart by at most what a stream that stops waiting between parts may come back
    # with (CREDIT_BYTES): under 8 % of a share here.
    assert max(got.values()) - min(got.values()) <= CREDIT_BYTES + GRANT_BYTES


def test_a_backlog_does_not_slow_a_live_stream():
    """A live part waiting for its 40 grants gets them one after the other while 16
    threads send finished files: no backlog grant comes between them, so it takes
    40 MiB at the limit, as if the backlog were not there. (Counted in grants, not in
    the fake clock: a thread the OS schedules late would move that clock.)"""
    fake = FakeTime()
    limiter = Limiter(clock=fake.clock, sleep=fake.sleep)
    limiter.set_rate(RATE)
    stop = threading.Event()
    order: list[str] = []
    granted = limiter._queue.granted

    def recording(key: str, size: int) -> None:
        order.append(key)
        granted(key, size)

    limiter._queue.granted = recording  # called under the limiter's lock: in order
    give_up = time.monotonic() + 60

    def backlog() -> None:
        while not stop.is_set() and time.monotonic() < give_up:
            limiter.acquire("dropped-in", Kind.BACKLOG, 8 * MIB)

    backlogs = [threading.Thread(target=backlog) for _ in range(16)]
    for t in backlogs:
        t.start()
    while limiter.granted < 4 * MIB and time.monotonic() < give_up:  # the backlog sends
        time.sleep(0.001)
    limiter.acquire("camera", Kind.LIVE, 40 * MIB)
    stop.set()
    limiter.set_rate(0)  # lets the backlog's waiting parts through
    for t in backlogs:
        t.join(60)
    first = order.index("camera")
    last = len(order) - 1 - order[::-1].index("camera")
    assert order[first : last + 1] == ["camera"] * (40 * MIB // GRANT_BYTES)


def test_a_part_keeps_its_place_between_its_grants():
    """While one grant of a part is sent, the part's next grant is already queued: a
    thread that wakes first cannot take the turn between them."""
    fake = FakeTime()
    seen: list[dict] = []

    def sleep(seconds: float) -> None:
        seen.append(limiter._queue.waiting())
        fake.sleep(seconds)

    limiter = Limiter(clock=fake.clock, sleep=sleep)
    limiter.set_rate(RATE)
    limiter.acquire("camera", Kind.LIVE, 3 * GRANT_BYTES)
    assert ["camera" in w for w in seen] == [True, True, False]


def test_the_parts_of_a_stream_get_their_grants_one_after_the_other():
    """Four parts of one stream ask at once, each on a thread of its own (a window or a
    batch sending them), while another stream takes every other turn: the stream's
    turns go to its first part until it has all its grants, then to the next, so each
    is sent as soon as it can be, not all four near the end. (Each sleep also yields
    for real, as a real one does: the other threads run then.)"""
    fake = FakeTime()
    takers: list[str] = []

    def sleep(seconds: float) -> None:
        takers.append(threading.current_thread().name)
        fake.sleep(seconds)
        time.sleep(0.002)

    limiter = Limiter(clock=fake.clock, sleep=sleep)
    limiter.set_rate(RATE)
    fake.gate.clear()
    threads = [
        threading.Thread(
            target=limiter.acquire, args=("camera", Kind.LIVE, 4 * GRANT_BYTES), name=f"part-{i}"
        )
        for i in range(4)
    ]
    threads.append(
        threading.Thread(
            target=limiter.acquire, args=("other", Kind.LIVE, 16 * GRANT_BYTES), name="other"
        )
    )
    asked: set[str] = set()
    queue_wait = limiter._queue.wait

    def wait(*args, **kwargs):  # under the limiter's lock
        asked.add(threading.current_thread().name)
        return queue_wait(*args, **kwargs)

    limiter._queue.wait = wait  # type: ignore[method-assign]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(asked) < 5 and time.monotonic() < deadline:
        time.sleep(0.001)
    fake.gate.set()
    for t in threads:
        t.join(60)
    camera = [name for name in takers if name != "other"]
    runs = [(name, len(list(run))) for name, run in itertools.groupby(camera)]
    assert sorted(runs) == [(f"part-{i}", 4) for i in range(4)]
    assert takers.count("other") == 16


def test_no_limit_takes_no_turn_and_lifting_the_limit_frees_the_waiting():
    fake = FakeTime()
    limiter = Limiter(clock=fake.clock, sleep=fake.sleep)
    limiter.acquire("a", Kind.LIVE, 64 * MIB)
    assert (fake.now, limiter.granted) == (0.0, 0)

    blocked = threading.Event()
    release = threading.Event()

    def slow_sleep(seconds: float) -> None:
        blocked.set()
        release.wait(10)

    limiter = Limiter(clock=fake.clock, sleep=slow_sleep)
    limiter.set_rate(RATE)
    first = threading.Thread(target=limiter.acquire, args=("a", Kind.LIVE, GRANT_BYTES))
    first.start()
    assert blocked.wait(10)  # a holds the turn: b waits for it
    second = threading.Thread(target=limiter.acquire, args=("b", Kind.LIVE, 64 * MIB))
    second.start()
    limiter.set_rate(0)
    second.join(10)
    assert not second.is_alive()
    assert limiter.waiting() == {}  # b's request left the queue
    release.set()
    first.join(10)


def test_a_redis_that_does_not_answer_limits_the_process_by_itself():
    import redis

    fake = FakeTime()

    def down(size: int, rate: float) -> float:
        raise redis.ConnectionError("gone")

    limiter = Limiter(reserve=down, clock=fake.clock, sleep=fake.sleep)
    limiter.set_rate(RATE)
    limiter.acquire("a", Kind.LIVE, 40 * MIB)
    assert fake.now == pytest.approx((40 * MIB - capacity(RATE)) / RATE)


def test_processes_of_one_host_share_its_bucket_in_redis(store):
    """Two processes' buckets (two clients, one host): what one took, the other waits
    for. Another host's bucket is its own."""
    rate = 1_000_000.0
    one = HostBucket.of(store, "studio-a")
    other = HostBucket(
        store.redis_client.__class__(connection_pool=store.redis_client.connection_pool), one.key
    )
    elsewhere = HostBucket.of(store, "studio-b")
    began = time.monotonic()
    waits = [(one if i % 2 else other).reserve(GRANT_BYTES, rate) for i in range(20)]
    elapsed = time.monotonic() - began
    # 20 grants against one bucket: the last waits for all but the burst and what
    # refilled while the calls were made.
    owed = (20 * GRANT_BYTES - capacity(rate)) / rate
    assert waits[-1] >= owed - elapsed - 0.01
    assert waits[-1] <= owed + 0.01
    assert elsewhere.reserve(GRANT_BYTES, rate) == 0.0


def test_a_change_of_the_block_reaches_the_limiter_on_the_reload_tick(store, monkeypatch):
    class Config:
        def __init__(self, mbps: float) -> None:
            self.bandwidth_limit_mbps = mbps
            self.checkpoints = store

    now = [0.0]
    saved = [Config(64)]
    loaded = threading.Event()

    def load(name: str) -> Config:
        loaded.set()
        return saved[0]

    limiter = Limiter()
    follower = Follower(limiter, load=load, clock=lambda: now[0])  # type: ignore[arg-type]
    follower.follow(saved[0], "cfg")  # type: ignore[arg-type]
    assert limiter.rate == 8_000_000
    saved[0] = Config(8)  # saved in the UI
    follower.tick()
    assert not loaded.is_set()  # not due yet
    now[0] += pacing.RELOAD_SECONDS
    follower.tick()
    assert loaded.wait(10)
    deadline = time.monotonic() + 10
    while limiter.rate != 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert limiter.rate == 1_000_000


@pytest.mark.usefixtures("registered")
def test_two_streams_upload_under_the_limit(registered, s3):
    """Two finished files at once under 40 Mbit/s: byte-identical objects, every byte
    sent granted by the limiter first, and no faster than the limit allows."""
    edit_config(bandwidth_limit_mbps=40.0)  # 5 MB/s
    rate = 5_000_000.0
    files = []
    for i in range(2):
        path = Path(registered.watch_dir) / f"cam{i}.mkv"
        data = payload(6 * MIB + 1000 * i, seed=i)
        path.write_bytes(data)
        files.append((path, data))
    before = LIMITER.granted
    results: dict[int, dict] = {}

    def run(i: int) -> None:
        results[i] = stream_ingest(path=str(files[i][0]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - began
    total = sum(len(d) for _, d in files)
    assert LIMITER.granted - before == total
    assert elapsed >= (total - capacity(rate)) / rate * 0.95
    for i, (_, data) in enumerate(files):
        assert results[i]["status"] == "completed"
        assert object_bytes(s3, registered.s3_bucket, results[i]["s3_key"]) == data
    edit_config(bandwidth_limit_mbps=0.0)
