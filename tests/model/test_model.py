"""The model: a stateful property test (Hypothesis) that drives the real engine with
random recorder and operator actions and checks after every step, and at the end,
what must hold whatever happened (tests/model/world.py says what is real and what is
abstracted, and what each check means):

- every take still in the folder has its final bytes in exactly one completed object;
- no object is completed that is not byte-identical to a state of a take, except a
  salvage's `.partial` (a prefix of a take that left the folder);
- every take that left the folder mid-upload (S3 took its part 1) kept what was
  uploaded: in an object of one of its states, its `.partial`, or, where a salvage
  cannot complete, its failed stream's open upload;
- no multipart upload of ours is open except a live or resumable stream's;
- nothing outside the watch folder is read;
- Redis keys per stream are bounded (the schema's, a record per part, ended streams
  expire).

Finished small files also arrive in bursts (closed in place, or renamed in) and, in
most examples, the sensor batches them: batch runs are searched like runs of their
own. MODEL_BATCHES=0 leaves bursts and batches out (a run per file only).

Budget: MODEL_EXAMPLES (default 200) examples of at most MODEL_STEPS (default 10)
steps. The seed is fixed (MODEL_SEED, default below) so that a failure in CI is the
change's, not a new draw's; MODEL_SEED=random explores, and the seed used is printed
either way. MODEL_REPLAY=<blob> replays one failure from the blob Hypothesis printed
(with the same MODEL_BATCHES). Every failure the model finds is kept as a plain test in
test_regressions.py.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, reproduce_failure, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.model.world import BURST_NAMES, COUNTS, MIB, NAMES, PART, World

pytestmark = pytest.mark.usefixtures("registered")

DEFAULT_SEED = 25
WORLD: World | None = None  # the machine is built by Hypothesis, without arguments

names = st.sampled_from(NAMES)
sizes = st.sampled_from([1, 777, 3 * MIB, PART, PART + 3])
# A burst: finished files seen together, most of one part at most (a batch's), at
# times one larger (a run of its own beside the batch).
burst_files = st.lists(
    st.tuples(st.sampled_from(BURST_NAMES), st.sampled_from([1, 777, 3 * MIB, PART, PART + 3])),
    min_size=2,
    max_size=3,
    unique_by=lambda f: f[0],
)
# What a recorder or a tool does to the folder (a new recording, and a burst of
# finished files, twice as likely).
RECORDER = (
    st.tuples(st.just("record"), names, sizes),
    st.tuples(st.just("record"), names, sizes),
    st.tuples(st.just("append"), names, sizes),
    st.tuples(st.just("close"), names),
    st.tuples(st.just("pause")),
    st.tuples(st.just("touch"), names),
    st.tuples(st.just("delete"), names),
    st.tuples(st.just("rename"), names, names),
    st.tuples(st.just("swap_for_link"), names),
)
BATCHES = os.environ.get("MODEL_BATCHES", "1") != "0"
if BATCHES:
    RECORDER += (
        st.tuples(st.just("burst"), burst_files, st.sampled_from(["closed", "moved"])),
        st.tuples(st.just("burst"), burst_files, st.sampled_from(["closed", "moved"])),
    )
recorder_actions = st.one_of(*RECORDER)
# What happens while a run polls its file: the above, the sensor handling its queue
# (it also does at every poll), Redis restarting, nothing.
# A wait lets the run go on to its next poll untouched: without it, most actions of
# a short script would land while the run opens its stream.
actions = st.one_of(
    *RECORDER,
    st.tuples(st.just("redis"), st.booleans()),
    st.tuples(st.just("tick")),
    st.tuples(st.just("wait")),
    st.tuples(st.just("wait")),
)
operations = st.one_of(
    st.tuples(st.just("sensor")),
    st.tuples(st.just("redis"), st.booleans()),
    st.tuples(st.just("janitor")),
    st.tuples(st.just("rerun")),
)
# (k, after, hard): the run's k-th call to S3 or Redis fails, before or after it is
# made; hard: and every later one (its process died).
crashes = st.none() | st.tuples(st.integers(1, 30), st.booleans(), st.booleans())


class IngestModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert WORLD is not None
        self.world = WORLD

    # batch: the sensor's batch_small_files (0: a run per file, as before batches).
    @initialize(
        detect=st.booleans(),
        trust=st.booleans(),
        batch=st.sampled_from([2, 50, 0]) if BATCHES else st.just(0),
    )
    def setup(self, detect: bool, trust: bool, batch: int) -> None:
        self.world.reset()
        self.world.configure(detect_writers=detect, trust_close_hints=trust)
        self.world.use_batches(batch)

    @rule(action=recorder_actions)
    def act(self, action: tuple) -> None:
        """A recorder or a tool acts; the sensor, running, handles what it saw."""
        self.world.do(action)
        self.world.sensor_tick()

    @rule(op=operations)
    def operate(self, op: tuple) -> None:
        """Something around the recorders: the sensor stops or starts again, Redis
        restarts, the janitor sweeps, an operator reruns the failed streams."""
        what, *args = op
        world = self.world
        if what == "sensor":
            world.sensor_stop() if world.sensor_up else world.sensor_start()
        elif what == "redis":
            world.restart_redis(*args)
        elif what == "janitor":
            world.janitor()
        else:
            world.rerun_failed()

    @precondition(lambda self: bool(self.world.pending))
    @rule(crash=crashes)
    def run(self, crash: tuple[int, bool, bool] | None) -> None:
        """The next queued run, on files nobody writes any more."""
        self.world.run_next([], crash)

    @precondition(lambda self: bool(self.world.pending))
    @rule(script=st.lists(actions, min_size=1, max_size=6), crash=crashes)
    def run_live(self, script: list[tuple], crash: tuple[int, bool, bool] | None) -> None:
        """The next queued run, while recorders and tools go on."""
        self.world.run_next(script, crash)

    @invariant()
    def holds(self) -> None:
        self.world.check()

    def teardown(self) -> None:
        self.world.quiesce()
        self.world.check(final=True)


def model_seed() -> int:
    raw = os.environ.get("MODEL_SEED", "").strip()
    if raw == "random":
        return random.SystemRandom().randrange(2**32)
    return int(raw) if raw else DEFAULT_SEED


# Its budget is examples, not seconds: 200 take about 8 minutes on two idle cores, more
# on a loaded machine, past the suite's 600 s per test.
@pytest.mark.timeout(2400)
def test_the_model(registered, restartable_redis, s3, tmp_path: Path, monkeypatch) -> None:
    global WORLD
    WORLD = World(
        settings=registered, redis=restartable_redis, s3=s3, tmp=tmp_path, monkeypatch=monkeypatch
    )
    # Orphaned uploads are the janitor's at once: the model's clock is not Redis's.
    WORLD.configure(
        settle_seconds=0.0,
        idle_timeout_seconds=1000.0,
        upload_ttl_hours=1e-6,
        max_parts_in_flight=4,
    )
    chosen = model_seed()
    examples = int(os.environ.get("MODEL_EXAMPLES", "200"))
    steps = int(os.environ.get("MODEL_STEPS", "10"))
    shrink = os.environ.get("MODEL_SHRINK", "1") != "0"
    print(f"\nmodel: seed {chosen} (replay with MODEL_SEED={chosen}), {examples} examples")
    started = time.monotonic()
    seed(chosen)(IngestModel)
    blob = os.environ.get("MODEL_REPLAY", "").strip()
    if blob:  # one failure again, from the blob Hypothesis printed
        reproduce_failure(hypothesis.__version__, blob.encode())(IngestModel)
    try:
        run_state_machine_as_test(
            IngestModel,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                database=None,
                print_blob=True,
                suppress_health_check=list(HealthCheck),
                # MODEL_SHRINK=0: report the first failure as found (a quick look).
                phases=[p for p in Phase if p != Phase.shrink or shrink],
            ),
        )
    finally:
        WORLD.reset()
        WORLD = None
        print(f"model: seed {chosen}, {time.monotonic() - started:.0f} s")
        from tests.model.world import TIMES

        for k, v in sorted(TIMES.items(), key=lambda kv: -sum(kv[1])):
            print(f"  {k}: {len(v)} calls, {sum(v):.1f} s, max {max(v):.1f}")
        print("model: " + ", ".join(f"{n} {what}" for what, n in sorted(COUNTS.items())))


@pytest.fixture
def story(registered, restartable_redis, s3, tmp_path: Path, monkeypatch) -> Iterator[World]:
    """A World for one story of the model, without Hypothesis, configured as the
    model configures it; reset after the story."""
    world = World(
        settings=registered, redis=restartable_redis, s3=s3, tmp=tmp_path, monkeypatch=monkeypatch
    )
    world.configure(settle_seconds=0.0, idle_timeout_seconds=1000.0, upload_ttl_hours=1e-6)
    try:
        yield world
    finally:
        world.reset()


def test_a_take_deleted_mid_upload_is_owed_its_partial(story: World) -> None:
    """One story of the model: a take is deleted while its run uploads it, after S3
    took its part 1. The final check owes it its `.partial`."""
    world = story
    before = COUNTS.get("takes that left mid-upload, salvaged", 0)
    world.record("a.mp4", PART + 3)
    world.sensor_tick()
    world.run_next([("wait",), ("wait",), ("delete", "a.mp4")], None)
    world.quiesce()
    world.check(final=True)
    assert COUNTS.get("takes that left mid-upload, salvaged", 0) == before + 1, world.log


def test_a_new_take_at_the_path_of_a_crashed_one_leaves_its_key_to_its_salvage(
    story: World,
) -> None:
    """One story of the model: a take's run dies after S3 took its part 1, its upload
    open at `rec/a.mp4`; a new take comes to the same path before anyone salvages the
    first. The new take completes at `rec/a (2).mp4`, and the final check owes the
    first its `.partial`, not an upload kept for good."""
    world = story
    before = COUNTS.get("takes that left mid-upload, salvaged", 0)
    world.record("a.mp4", PART + 3)
    world.sensor_tick()
    # The 22nd call to S3 or Redis: after part 1, before the completion.
    world.run_next([("wait",), ("wait",), ("wait",)], (22, True, True))
    assert world.first_parts, world.log
    world.delete("a.mp4")
    world.record("a.mp4", 777)
    world.close("a.mp4")
    world.quiesce()
    world.check(final=True)
    assert COUNTS.get("takes that left mid-upload, salvaged", 0) == before + 1, world.log
    assert sorted(world.digests()) == ["rec/a (2).mp4", "rec/a.partial.mp4"]
