"""The world the model drives: a watch folder with recorders in it, the sensor's
trigger, the stream-ingest flow, a Redis that restarts, moto's S3; and the checks of
what must hold whatever happened (`World.check`).

The engine is the real one: the flow function under Prefect's test harness, the
sensor's StreamTrigger, the janitor flow, real Redis and moto. What is abstracted:

- Time. The flow's clock (`time` in stream_ingest/flows/ingest.py and stream_ingest/flows/finalize.py) is real
  time plus an offset that a pause moves past the idle timeout at once; every other
  clock (lease TTLs, Redis, retries) is real.
- Concurrency between the recorder and the flow. Runs are synchronous. A run's
  recorder actions happen at its polls: each stat the flow makes of its file (the tail
  loop's, finalize's before and after, open-upload's) first performs the next action
  of the run's script. Uploads run in the flow's threads meanwhile, as in production.
- The sensor. Events are the ones the watcher makes of what the recorders did (create,
  open, close after write, move, delete), queued and handled by a real StreamTrigger
  when the model says (`sensor_tick`), and at every poll of a run. Runs it starts are
  queued and run when the model says: Prefect's idempotency keys are honoured (a key
  seen before starts nothing). A stopped sensor drops events; a started one has an
  empty memory and does the catch-up scan.
- A crashed run. From a chosen call on (the k-th call the run makes to S3 or Redis,
  before or after it reaches them), every call the run makes raises `Crash`: what a
  kill -9 leaves (no cleanup reaches Redis or S3, the lease stays held until its TTL)
  except that Prefect has the run Failed, not Crashed (both are over for a take-over).
  A soft crash fails only that one call: a bug or a refusal the run then handles.
- Batches. With `batch_max` (drawn per example), the sensor holds new streams until its
  queue is drained and then asks for their runs (StreamTrigger.flush): finished small
  files seen together share one batch run (stream_ingest/flows/batch.py). The batch's
  task runs are the real ones, one file after another (their order, and so where the
  k-th call lands, is then the same on every replay); the k-th call counts over the
  whole batch run, and a hard crash kills all its files. A file the batch hands on gets
  its run through the same trigger (Prefect's idempotency keys honoured).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import random
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.store_hints import Hints
from stream_ingest.blocks.store_identities import Identities
from stream_ingest.blocks.store_leases import Leases
from stream_ingest.blocks.store_parts import Parts
from stream_ingest.blocks.store_retention import Retention
from stream_ingest.blocks.store_revisions import Revisions
from stream_ingest.blocks.store_streams import Streams
from stream_ingest.errors import StreamError
from stream_ingest.flows.batch import BatchIncomplete
from stream_ingest.flows.runs import CreatedRun, RunRequest
from stream_ingest.parts import MIB
from stream_ingest.sensors.events import (
    FileAppeared,
    FileClosed,
    FileFilter,
    FileGone,
    FileOpened,
    ReleaseGone,
)
from stream_ingest.sensors.trigger import StreamTrigger
from stream_ingest.sensors.watcher import scan
from stream_ingest.states import ACTIVE, TERMINAL, Status

NAMES = ("a.mp4", "b.mp4")
PART = 5 * MIB
MAX_FILE = 3 * PART + MIB  # four parts at most: enough for copies, holes and a tail
IDLE_TIMEOUT = 1000.0  # seconds of the flow's clock: only a pause reaches it
# Every key a stream can have (stream_ingest/blocks/store_space.py).
STREAM_KEYS = frozenset({"meta", "parts", "lease", "prior", "revisions", "ask-again"})
RUN_DEADLINE = 90.0  # real seconds a run may take once its recorders have stopped
BURST_NAMES = (*NAMES, "c.mp4")  # a burst of finished files may bring a third name
# What the model did, over all its examples (printed at the end of its test).
COUNTS: dict[str, int] = {}


def count(what: str, n: int = 1) -> None:
    COUNTS[what] = COUNTS.get(what, 0) + n


class Crash(Exception):
    """The run's process is dead from here on (or, soft, this one call failed)."""


class Violation(AssertionError):
    """An invariant of the model does not hold."""


@dataclasses.dataclass
class Take:
    """One recording: the bytes a recorder wrote into one file since it was created
    or truncated. `versions` are the digests of every state the file was in (a
    completed object must be one of them); `names` every name it was seen under."""

    number: int
    name: str
    content: bytearray = dataclasses.field(default_factory=bytearray)
    versions: set[str] = dataclasses.field(default_factory=set)
    names: list[str] = dataclasses.field(default_factory=list)
    fd: int | None = None  # the recorder's handle while it records
    lost_records: int = 0  # Redis lost its data while the take was completed

    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def seen(self) -> None:
        self.versions.add(self.digest())


class Clock:
    """The flow's clock: real time plus what pauses added."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def shim(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            monotonic=self.monotonic, sleep=time.sleep, time=time.time, time_ns=time.time_ns
        )


class Arm:
    """The crash switch shared by every thread of a run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = False
        self.countdown = 0
        self.after = False
        self.hard = False
        self.dead = False
        self.fired = False
        self.local = threading.local()  # `bypass`: the model's own calls in a hook
        # Uploads S3 created for a run that died before it could record them.

    def set(self, crash: tuple[int, bool, bool] | None) -> None:
        with self.lock:
            self.active = crash is not None
            self.countdown, self.after, self.hard = crash or (0, False, False)
            self.dead = self.fired = False

    def bypassed(self) -> bool:
        return getattr(self.local, "bypass", False)

    @contextlib.contextmanager
    def bypass(self) -> Iterator[None]:
        self.local.bypass = True
        try:
            yield
        finally:
            self.local.bypass = False

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.active or self.bypassed():
            return fn(*args, **kwargs)
        with self.lock:
            if self.dead:
                raise Crash("the run's process is gone")
            self.countdown -= 1
            fire = self.countdown == 0
            if fire:
                self.fired = True
                self.dead = self.hard
        if fire and not self.after:
            raise Crash(f"crash before {getattr(fn, '__name__', fn)}")
        out = fn(*args, **kwargs)
        if fire:
            raise Crash(f"crash after {getattr(fn, '__name__', fn)}")
        return out


# The classes whose methods reach Redis or S3: the bucket, the checkpoint store and
# its roles (stream_ingest/blocks/checkpoints.py composes them).
ENGINE_CLASSES = (
    StreamBucket,
    CheckpointStore,
    Streams,
    Parts,
    Identities,
    Leases,
    Revisions,
    Hints,
    Retention,
)


def _engine_methods(cls: type) -> list[str]:
    """The methods of our blocks that reach Redis or S3 (not Prefect's Block API, not
    key names, not what only queues commands in a caller's transaction)."""
    names = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = getattr(cls, name, None)
        pure = (
            name.endswith(("_key", "_keys"))
            or name.startswith("queue_")
            or name in ("same_place", "set_retention")
        )
        ours = isinstance(attr, types.FunctionType) and attr.__module__.startswith(
            "stream_ingest.blocks."
        )
        if ours and not pure:
            names.append(name)
    # A hook list gone empty (a module renamed) would leave the model crashing nothing.
    assert names, f"no engine methods found on {cls.__name__}"
    return names


TIMES: dict[str, list[float]] = {}


def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **kw: Any) -> Any:
        t = time.monotonic()
        try:
            return fn(*a, **kw)
        finally:
            TIMES.setdefault(fn.__name__, []).append(time.monotonic() - t)

    return wrapper


class World:
    """Everything one model example works on; `reset` makes it new for the next."""

    def __init__(self, *, settings: Any, redis: Any, s3: Any, tmp: Path, monkeypatch: Any):
        self.settings = settings
        self.redis = redis
        self.s3 = s3
        self.bucket = settings.s3_bucket
        self.watch = Path(settings.watch_dir)
        self.outside = tmp / "outside"
        self.outside.mkdir()
        self.secret = self.outside / "secret.mp4"
        self.secret.write_bytes(b"SECRET" + random.Random(7).randbytes(PART + 11))
        self.config_name = settings.config_block
        self.store = CheckpointStore.from_url(redis.url, settings.redis_namespace)
        self.clock = Clock()
        self.arm = Arm()
        self.outside_reads: list[str] = []
        self.current: dict[str, Any] = {}
        self._patch(monkeypatch)
        self.options: dict[str, Any] = {}
        self.reset()

    # -- engine hooks -----------------------------------------------------------
    def _patch(self, monkeypatch: Any) -> None:
        import stream_ingest.flows.batch as batch_module
        import stream_ingest.flows.finalize as finalize_module
        import stream_ingest.flows.follow_up as follow_up_module
        import stream_ingest.flows.ingest as ingest_module
        import stream_ingest.flows.janitor as janitor_module
        import stream_ingest.flows.opening as opening_module

        for module in (ingest_module, janitor_module):
            monkeypatch.setattr(module, "config_of_run", self._config)
        real_ended = janitor_module.ended_runs

        def ended_runs(run_ids: Any) -> set[str]:
            # The sensor's runs have the model's ids (Prefect's would be the runs'
            # own): a run the model has run is over, as Prefect would say.
            ids = set(run_ids)
            return (ids & self.finished) | real_ended(ids - self.finished)

        monkeypatch.setattr(janitor_module, "ended_runs", ended_runs)
        shim = self.clock.shim()
        monkeypatch.setattr(ingest_module, "time", shim)
        monkeypatch.setattr(finalize_module, "time", shim)
        monkeypatch.setattr(batch_module, "time", shim)  # its settle is finalize's
        for module in (
            ingest_module,
            finalize_module,
            opening_module,
            batch_module,  # `_finished` looks at the file: a poll like the others
        ):
            real = module.snapshot
            monkeypatch.setattr(module, "snapshot", self._polled(real))
        for module in (ingest_module, follow_up_module):
            monkeypatch.setattr(module, "create_stream_run", self._flow_starts_run)
        monkeypatch.setattr(batch_module, "create_stream_run", self._batch_hands_on)
        self._patch_batch(monkeypatch, batch_module)
        real_upload_part = StreamBucket.upload_part

        @functools.wraps(real_upload_part)  # still the engine's method: armed below
        def upload_part(self_: Any, key: str, upload_id: str, number: int, body: Any) -> Any:
            out = real_upload_part(self_, key, upload_id, number, body)
            if number == 1:  # S3 holds the take's first bytes: from here it is mid-upload
                self.first_parts[upload_id] = (len(body), hashlib.sha256(body).hexdigest())
            return out

        monkeypatch.setattr(StreamBucket, "upload_part", upload_part)
        for cls in ENGINE_CLASSES:
            for name in _engine_methods(cls):
                real = getattr(cls, name)

                def armed(self_: Any, *a: Any, _real: Any = real, **kw: Any) -> Any:
                    return self.arm.call(_real, self_, *a, **kw)

                monkeypatch.setattr(cls, name, armed)
        for name in ("pread", "preadv"):
            real_read = getattr(os, name)

            def watched(fd: int, *a: Any, _real: Any = real_read) -> Any:
                self._note_read(fd)
                return _real(fd, *a)

            monkeypatch.setattr(os, name, watched)

    def _note_read(self, fd: int) -> None:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return
        if target.startswith(str(self.outside)):
            self.outside_reads.append(target)

    def _polled(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def snapshot(*args: Any, **kwargs: Any) -> Any:
            if self.current and not self.arm.bypassed():
                self._poll()
            return real(*args, **kwargs)

        return snapshot

    def _flow_starts_run(self, request: RunRequest, job_variables: Any = None) -> CreatedRun:
        if self.arm.dead and not self.arm.bypassed():  # a dead process creates no run
            raise Crash("the run's process is gone")
        return CreatedRun(self.trigger(request), request.name)

    def _batch_hands_on(self, request: RunRequest, job_variables: Any = None) -> CreatedRun:
        count("files handed on by a batch")
        self.log.append(f"batch hands on {request.stream_id[:8]}")
        return self._flow_starts_run(request, job_variables)

    def _patch_batch(self, monkeypatch: Any, batch_module: Any) -> None:
        """A batch's files one after another (see the module's docstring), and each
        file's failure judged as a run of its own would be: a StreamError or a crash
        is a failure the engine expects, anything else is a bug (`unexpected`)."""
        real_ingest, real_end = batch_module._ingest, batch_module.record_end
        one_at_a_time = threading.Lock()

        def ingest(*args: Any, **kwargs: Any) -> Any:
            with one_at_a_time:
                try:
                    return real_ingest(*args, **kwargs)
                except Exception as exc:
                    self._judge(exc)
                    raise

        def record_end(ctx: Any, exc: BaseException, reporter: Any) -> None:
            self._judge(exc)
            real_end(ctx, exc, reporter)

        monkeypatch.setattr(batch_module, "_ingest", ingest)
        monkeypatch.setattr(batch_module, "record_end", record_end)

    def _judge(self, exc: BaseException) -> None:
        if not isinstance(exc, (StreamError, Crash)):
            self.unexpected.append(f"{type(exc).__name__}: {exc}")

    # -- per example ----------------------------------------------------------------
    @timed
    def reset(self) -> None:
        for take in getattr(self, "takes", []):
            if take.fd is not None:
                os.close(take.fd)
        self.takes: list[Take] = []
        self.files: dict[str, Take | str] = {}  # name -> its take, or "link"
        self.runs_by_key: dict[str, str] = {}
        self.finished: set[str] = set()  # ids of the queued runs that have run
        self.dead_revisions: set[str] = set()
        self.pending: list[RunRequest] = []
        self.events: list[Any] = []
        self.sensor_up = True
        self.batch_max = 0
        self.sensor = self._new_sensor()
        self.clock.offset = 0.0
        self.arm.set(None)
        self.outside_reads.clear()
        self.wiped_uploads: set[str] = set()
        # upload id -> size and SHA-256 of the part 1 S3 took (a prefix of some take)
        self.first_parts: dict[str, tuple[int, str]] = {}
        self._digest_of: dict[tuple[str, str], str] = {}
        self.log: list[str] = []
        self.unexpected: list[str] = []
        self.store.redis_client.flushall()
        for entry in self.watch.iterdir():
            entry.unlink()
        for obj in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            self.s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
        for up in self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []):
            self.s3.abort_multipart_upload(
                Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
            )

    @timed
    def configure(self, **options: Any) -> None:
        """Change the IngestConfig the runs get."""
        self.options.update(options)

    def _config(self, run_id: str = "", name: str | None = None) -> Any:
        """What the runs load: the registered block's settings with the model's
        options, built anew for each run as loading the block would (saving the
        block for each example would cost seconds of Prefect's API each time)."""
        from stream_ingest.blocks.registration import build_config

        return build_config(self.settings.model_copy(update=self.options))

    def use_batches(self, batch_max: int) -> None:
        """The sensor's `batch_small_files` (0: a run per file), from now on."""
        self.batch_max = batch_max
        self.sensor = self._new_sensor()

    def _new_sensor(self) -> StreamTrigger:
        detect = self.options.get("detect_writers", self.settings.detect_writers)
        return StreamTrigger(
            self.store,
            deployment=self.settings.deployment,
            config=self.config_name,
            watch_dir=str(self.watch),
            trigger=self.trigger,
            emit=lambda **_: None,
            batch_max=self.batch_max,
            small_bytes=PART,
            takes_batches=lambda deployment: True,
            detect_writers=detect,
        )

    def trigger(self, request: RunRequest) -> str:
        """Prefect's run creation: one run per idempotency key, queued to run."""
        run_id = self.runs_by_key.get(request.idempotency_key)
        if run_id is None:
            run_id = self.runs_by_key[request.idempotency_key] = str(uuid.uuid4())
            self.pending.append(request)
        return run_id

    # -- the recorders --------------------------------------------------------------
    def path(self, name: str) -> str:
        return str(self.watch / name)

    def take_at(self, name: str) -> Take | None:
        entry = self.files.get(name)
        return entry if isinstance(entry, Take) else None

    def _event(self, event: Any) -> None:
        if self.sensor_up:
            self.events.append(event)

    def _bytes(self, take: Take, n: int) -> bytes:
        rnd = random.Random(f"{take.number}:{len(take.content)}")
        return rnd.randbytes(n)

    def _write(self, take: Take, n: int) -> None:
        n = min(n, MAX_FILE - len(take.content))
        if n <= 0:
            return
        data = self._bytes(take, n)
        assert take.fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(take.fd, view) :]
        take.content += data
        take.seen()

    @timed
    def record(self, name: str, size: int) -> None:
        """A recorder creates `name` (or truncates it: `ffmpeg -y`) and writes."""
        old = self.files.get(name)
        if old == "link":
            os.unlink(self.path(name))
            self._event(FileGone(self.path(name)))
        existed = isinstance(old, Take)
        if isinstance(old, Take):
            self._stop(old, closed_event=True)
        take = Take(len(self.takes) + 1, name, names=[name])
        self.takes.append(take)
        take.fd = os.open(self.path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.files[name] = take
        take.seen()
        self._event(
            FileOpened(self.path(name)) if existed else FileAppeared(self.path(name), "created")
        )
        if not existed:
            self._event(FileOpened(self.path(name)))
        self._write(take, size)
        self.log.append(f"record {name} take {take.number} {size}")

    @timed
    def append(self, name: str, size: int) -> None:
        take = self.take_at(name)
        if take is None:
            return
        if take.fd is None:  # the recorder opens it again
            take.fd = os.open(self.path(name), os.O_WRONLY | os.O_APPEND)
            self._event(FileOpened(self.path(name)))
        self._write(take, size)
        self.log.append(f"append {name} {size}")

    def close(self, name: str) -> None:
        take = self.take_at(name)
        if take is not None and take.fd is not None:
            self._stop(take, closed_event=True)
            self.log.append(f"close {name}")

    def _stop(self, take: Take, closed_event: bool) -> None:
        if take.fd is not None:
            os.close(take.fd)
            take.fd = None
            if closed_event and self.files.get(take.name) is take:
                self._event(FileClosed(self.path(take.name)))

    def touch(self, name: str) -> None:
        """`touch`: opened for writing, mtime moved, closed; the bytes unchanged."""
        if self.take_at(name) is None:
            return
        fd = os.open(self.path(name), os.O_WRONLY)
        st = os.fstat(fd)
        later = max(time.time_ns(), st.st_mtime_ns + 1_000_000_000)
        os.utime(fd, ns=(later, later))
        os.close(fd)
        self._event(FileOpened(self.path(name)))
        self._event(FileClosed(self.path(name)))
        self.log.append(f"touch {name}")

    def delete(self, name: str) -> None:
        entry = self.files.pop(name, None)
        if entry is None:
            return
        if isinstance(entry, Take):
            self._stop(entry, closed_event=False)
        os.unlink(self.path(name))
        self._event(FileGone(self.path(name)))
        self.log.append(f"delete {name}")

    def rename(self, src: str, dst: str) -> None:
        take = self.take_at(src)
        if take is None or src == dst:
            return
        replaced = self.files.get(dst)
        if isinstance(replaced, Take):
            self._stop(replaced, closed_event=False)
        os.rename(self.path(src), self.path(dst))
        del self.files[src]
        self.files[dst] = take
        take.name = dst
        take.names.append(dst)
        self._event(FileGone(self.path(src), moved_to=self.path(dst)))
        self._event(FileAppeared(self.path(dst), "moved"))
        self.log.append(f"rename {src} {dst}")

    @timed
    def burst(self, files: list[tuple[str, int]], how: str) -> None:
        """Several finished files at once, as one burst of the sensor's events: each
        written and closed in place (`closed`), or written under `<name>.part`, which
        the sensor ignores, and renamed to its name (`moved`)."""
        for name, size in files:
            if how == "closed":
                self.record(name, size)
                self.close(name)
                continue
            old = self.files.get(name)
            if isinstance(old, Take):
                self._stop(old, closed_event=False)
            take = Take(len(self.takes) + 1, name, names=[name])
            self.takes.append(take)
            stage = self.path(name) + ".part"
            take.fd = os.open(stage, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            take.seen()
            self._write(take, size)
            self._stop(take, closed_event=False)
            os.rename(stage, self.path(name))
            self.files[name] = take
            self._event(FileAppeared(self.path(name), "moved"))
        self.log.append(f"burst {how} {files}")
        count("bursts of finished files")

    def swap_for_link(self, name: str) -> None:
        """The name becomes a symlink to a file outside the watch folder."""
        if self.take_at(name) is None:
            return
        self.delete(name)
        os.symlink(self.secret, self.path(name))
        self.files[name] = "link"
        self._event(FileAppeared(self.path(name), "created"))
        self.log.append(f"link {name}")

    def do(self, action: tuple[Any, ...]) -> None:
        """One recorder, sensor or Redis action, as a script names it. An action on a
        name that holds no recording starts one there instead: every step does
        something."""
        what, *args = action
        on_a_take = ("append", "close", "touch", "delete", "rename", "swap_for_link")
        if what in on_a_take and self.take_at(args[0]) is None:
            what, args = "record", [args[0], args[1] if what == "append" else 777]
        if what == "wait":
            return
        if what == "redis":
            self.restart_redis(*args)
        elif what == "tick":
            self.sensor_tick()
        else:
            getattr(self, what)(*args)

    def pause(self) -> None:
        """No growth for longer than the idle timeout, as far as the flow can tell."""
        self.clock.offset += IDLE_TIMEOUT + 1
        self.log.append("pause")

    # -- the sensor -----------------------------------------------------------------
    @timed
    def sensor_tick(self) -> None:
        """The sensor handles what it has queued (each event as its loop does: a
        failure of Redis is retried, anything else drops the event)."""
        with self.arm.bypass():
            while self.events and self.sensor_up:
                event = self.events.pop(0)
                self._handle(functools.partial(self.sensor.handle, event), event)
            # The queue is drained: the loop requests the waiting streams' runs.
            if self.sensor_up and (self.sensor.waiting or self.sensor.batches):
                self._handle(self.sensor.flush, "the waiting streams' runs")

    def _handle(self, call: Callable[[], None], what: Any) -> None:
        from stream_ingest.errors import CheckpointUnavailable

        for attempt in range(50):
            try:
                call()
                return
            except CheckpointUnavailable:
                time.sleep(0.1 * (attempt + 1))
        raise Violation(f"the sensor could not handle {what}: Redis stays unreachable")

    def sensor_stop(self) -> None:
        self.sensor_up = False
        self.events.clear()  # its queue is in memory
        self.log.append("sensor stop")

    @timed
    def sensor_start(self) -> None:
        """A started sensor: empty memory, the catch-up scan (its ReleaseGone first)."""
        self.sensor_up = True
        self.sensor = self._new_sensor()
        self.events = [ReleaseGone(), *scan(self.watch, self._filter())]
        self.sensor_tick()
        self.log.append("sensor start")

    def rescan(self) -> None:
        """The sensor's periodic scan."""
        if self.sensor_up:
            self.events += [ReleaseGone(), *scan(self.watch, self._filter())]
            self.sensor_tick()

    def _filter(self) -> FileFilter:
        return FileFilter.of(self.settings, self.watch)

    # -- Redis ----------------------------------------------------------------------
    @timed
    def restart_redis(self, keep_data: bool) -> None:
        if not keep_data:
            # Documented (docs/architecture.md): an upload whose registry entry is lost
            # with Redis's data, while no run of its stream is alive, cannot be known as
            # ours again; only the bucket's lifecycle rule aborts it. Excluded here,
            # except the uploads the running run resumes, which it must keep.
            running = self.current.get("uploads", set())
            for up in self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []):
                if up["UploadId"] not in running:
                    self.wiped_uploads.add(up["UploadId"])
            # A known failure (test_regressions.py, xfail): a completed take still in
            # the folder when Redis loses its data is uploaded again under a new key
            # once the sensor claims its file anew. Each such loss may add one object.
            with self.arm.bypass():
                held = set(self.digests().values())
            for take in self.takes:
                if self.files.get(take.name) is take and take.digest() in held:
                    take.lost_records += 1
        self.redis.restart(keep_data)
        self.log.append(f"redis restart keep={keep_data}")

    # -- runs -----------------------------------------------------------------------
    def rerun_failed(self, most: int | None = None) -> None:
        """`stream-ingest streams rerun --failed`; with `most`, the rerun automation
        (automations/rerun-failed-stream.yaml), which reruns a stream only while its
        failures since the last success are at most that."""
        for record in self.store.streams.list(Status.FAILED):
            if most is not None and record.failures > most:
                continue
            request = RunRequest.rerun(
                self.settings.deployment, record.original_path, record.stream_id, self.config_name
            )
            self.trigger(request)
        self.log.append("rerun failed")

    @timed
    def run_next(self, script: list[tuple[Any, ...]], crash: tuple[int, bool, bool] | None) -> None:
        """The next queued run, synchronously: `script` is done one action per poll;
        then the recorders stop, and then the flow's clock passes the idle timeout."""
        if not self.pending:
            return
        from stream_ingest.flows.ingest import stream_ingest

        request = self.pending.pop(0)
        record = self.store.streams.get(request.stream_id)
        sids = list(request.batch) or [request.stream_id]
        records = [record] if not request.batch else self.store.streams.many(set(sids))
        self.current = {
            "script": list(script),
            "after": 0,
            "deadline": None,
            # The uploads the run resumes (a batch's: each of its files').
            "uploads": {r.s3_upload_id for r in records if r and r.s3_upload_id},
        }
        self.arm.set(crash)
        self.log.append(f"run {request.idempotency_key} crash={crash}")
        if request.batch:
            count("batch runs")
            count("files in batch runs", len(request.batch))
        try:
            if request.batch:
                state = stream_ingest(
                    stream_ids=list(request.batch), config=request.config, return_state=True
                )
            else:
                state = stream_ingest(
                    path=request.sent_path,
                    stream_id=request.stream_id,
                    config=request.config,
                    return_state=True,
                )
        finally:
            self.finished.add(self.runs_by_key[request.idempotency_key])
            stalled = self.current.get("stalled")
            self.current = {}
            self.arm.set(None)
        if stalled:
            raise Violation(f"a run did not end after its recorders stopped: {stalled}")
        after = self.store.streams.get(request.stream_id) if state.is_failed() else None
        unbegun = (
            after is not None
            and record is not None
            and "revision" in request.tags
            and (after.status, after.revision) == (Status.COMPLETED, record.revision)
        )
        if unbegun:
            # A known failure (test_regressions.py, xfail): a revision run that dies
            # before it begins the revision is never run again for that file state.
            # The model has the operator rerun the stream at the end.
            self.dead_revisions.add(request.stream_id)
        if state.is_failed():
            try:
                state.result()
            # A batch's files were judged one by one (_judge): its own end says only
            # that some did not complete.
            except (StreamError, Crash, BatchIncomplete):
                pass
            except Exception as exc:
                self.unexpected.append(f"{type(exc).__name__}: {exc}")
        self.sensor_tick()

    def _poll(self) -> None:
        cur = self.current
        with self.arm.bypass():
            if cur["script"]:
                self.do(cur["script"].pop(0))
            else:
                cur["after"] += 1
                if cur["after"] == 1:
                    for take in self.takes:
                        if take.fd is not None:
                            self.close(take.name)
                    cur["deadline"] = time.monotonic() + RUN_DEADLINE
                elif time.monotonic() > cur["deadline"]:
                    cur["stalled"] = " / ".join(self.log[-8:])
                    raise Crash("the model stops a run that does not end")
                else:
                    self.clock.offset += IDLE_TIMEOUT + 1
            if self.sensor_up:
                self.sensor_tick()

    @timed
    def janitor(self) -> None:
        from stream_ingest.flows.janitor import janitor

        janitor(config=self.config_name)
        self.log.append("janitor")

    @timed
    def quiesce(self) -> None:
        """The end of the story: recorders stop, the sensor runs (started if it was
        stopped) and scans, queued runs run, the janitor sweeps and failed streams are
        rerun, until nothing is left to do."""
        for take in self.takes:
            if take.fd is not None:
                self.close(take.name)
        if not self.sensor_up:
            self.sensor_start()
        self.sensor_tick()
        for _ in range(6):
            self.rescan()
            while self.pending:
                self.run_next([], None)
            streams = self.store.streams.list()
            if any(r.status in ACTIVE for r in streams) or self._orphans():
                self.janitor()
            self.rerun_failed(most=3)
            for sid in sorted(self.dead_revisions):
                record = self.store.streams.get(sid)
                if record is not None:
                    self.trigger(
                        RunRequest.rerun(
                            self.settings.deployment, record.original_path, sid, self.config_name
                        )
                    )
            self.dead_revisions.clear()
            if not self.pending:
                return
        raise Violation(
            "runs are still being started after six rounds: " + " / ".join(self.log[-12:])
        )

    def _orphans(self) -> bool:
        owned = {r.s3_upload_id for r in self.store.streams.list() if r.status not in TERMINAL}
        ups = self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return any(u["UploadId"] not in owned | self.wiped_uploads for u in ups)

    # -- the invariants -------------------------------------------------------------
    def digests(self) -> dict[str, str]:
        """Each object's SHA-256 (a body is read again only when its ETag changed)."""
        out = {}
        for obj in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            key, etag = obj["Key"], obj["ETag"]
            if (key, etag) not in self._digest_of:
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                self._digest_of[(key, etag)] = hashlib.sha256(body).hexdigest()
            out[key] = self._digest_of[(key, etag)]
        return out

    @timed
    def check(self, final: bool = False) -> None:
        with self.arm.bypass():
            digests = self.digests()
            records = self.store.streams.list()
            self._check_reads()  # first: such bytes also make an object no take has
            self._check_objects(digests, records, final)
            self._check_uploads(records, final)
            self._check_keys(records)
            if final:
                self._check_takes(digests)
                self._check_left_takes(digests, records)
            if self.unexpected:
                raise Violation(f"a run failed unexpectedly: {self.unexpected}")

    def _check_objects(self, digests: dict[str, str], records: list[Any], final: bool) -> None:
        """No object, and so none shown completed, that is not a state of a take,
        except a salvage's: a stream's `.partial` object, a prefix of a take; and,
        between steps, that prefix still at the stream's own key, where the salvage
        completes it first (a try cut short there is finished by the next one)."""
        versions = set().union(*(t.versions for t in self.takes)) if self.takes else set()
        salvages = {r.salvage_key for r in records if r.status == Status.SALVAGED}
        if not final:
            salvages |= {r.s3_key for r in records if r.salvage_key and r.status not in TERMINAL}
        for key, digest in digests.items():
            if digest in versions:
                continue
            if key not in salvages or not self._a_prefix(key):
                raise Violation(f"object {key} is not byte-identical to any take: {self.log}")
        for record in records:
            if record.status != Status.COMPLETED:
                continue
            if record.s3_key not in digests:
                raise Violation(
                    f"stream {record.stream_id} completed, object {record.s3_key} missing"
                )
            if record.sha256 and record.sha256 != digests[record.s3_key]:
                # A later revision or take may have replaced it; then that stream says so.
                newer = [
                    r
                    for r in records
                    if r.s3_key == record.s3_key
                    and r.stream_id != record.stream_id
                    and r.status == Status.COMPLETED
                ]
                if not newer:
                    raise Violation(
                        f"stream {record.stream_id} completed with sha256 {record.sha256[:12]}, "
                        f"object {record.s3_key} is {digests[record.s3_key][:12]}: {self.log}"
                    )

    def _a_prefix(self, key: str) -> bool:
        """Whether the object at `key` holds the first bytes of some take (not all)."""
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return any(
            0 < len(body) < len(t.content) and t.content.startswith(body) for t in self.takes
        )

    def _check_uploads(self, records: list[Any], final: bool) -> None:
        """No multipart upload of ours open except a live or resumable stream's (and,
        between steps, one the janitor knows to abort: registered, or at a key whose
        creation was announced and never ended, stream_ingest/flows/creation.py)."""
        live = {r.s3_upload_id for r in records if r.status not in TERMINAL and r.s3_upload_id}
        known = set(self.store.parts.uploads()) if not final else set()
        announced = {key for _, key, _ in self.store.parts.creations()} if not final else set()
        for up in self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []):
            uid = up["UploadId"]
            if uid in live or uid in known or uid in self.wiped_uploads:
                continue
            if up["Key"] in announced:
                continue
            raise Violation(f"upload {uid[:12]} of {up['Key']} is open and nobody's: {self.log}")

    def _check_reads(self) -> None:
        if self.outside_reads:
            raise Violation(f"read outside the watch folder: {self.outside_reads}: {self.log}")

    def _check_keys(self, records: list[Any]) -> None:
        """Redis keys per stream bounded: a stream has only its schema's keys, a part
        record per part of its file, and an ended stream's keys expire."""
        client = self.store.redis_client
        prefix = f"{self.store.namespace}:stream:"
        per: dict[str, set[str]] = {}
        for raw in client.scan_iter(f"{prefix}*"):
            key = raw.decode()
            sid, _, kind = key[len(prefix) :].partition(":")
            per.setdefault(sid, set()).add(kind)
            if kind not in STREAM_KEYS:
                raise Violation(f"unknown stream key {key}")
        status = {r.stream_id: r.status for r in records}
        for sid, kinds in per.items():
            if status.get(sid) in TERMINAL:
                for kind in kinds & {"meta", "parts", "prior", "revisions"}:
                    if client.pttl(f"{prefix}{sid}:{kind}") < 0:
                        raise Violation(f"stream {sid} is {status[sid]}, its {kind} never expires")
            parts = client.hlen(f"{prefix}{sid}:parts")
            if parts > -(-MAX_FILE // PART):
                raise Violation(f"stream {sid} has {parts} part records")
        for raw in client.scan_iter(f"{self.store.namespace}:hint:*"):
            if client.pttl(raw) < 0:
                raise Violation(f"hint {raw!r} never expires")

    def _check_takes(self, digests: dict[str, str]) -> None:
        """Every take still in the folder has its final bytes in exactly one completed
        object. A rename starts a new stream under the new name (documented), so a
        take renamed after it completed may be in one object per name it had; and
        one more per loss of Redis's data after it completed (a known failure, see
        restart_redis)."""
        for name, entry in self.files.items():
            if not isinstance(entry, Take):
                continue
            final = entry.digest()
            holders = [k for k, d in digests.items() if d == final]
            most = len(set(entry.names)) + entry.lost_records
            if not 1 <= len(holders) <= most:
                raise Violation(
                    f"take {entry.number} at {name} ({len(entry.content)} bytes) is in "
                    f"{len(holders)} objects {holders}, expected 1..{most}: {self.log}"
                )
        # Takes that left the folder before they completed (deleted, truncated, swapped
        # for a link, renamed over) are owed no whole object: what was uploaded of them
        # is salvaged into a `.partial` object (checked in _check_objects: a prefix of
        # a take), or kept in its upload where salvage cannot complete it.

    def _check_left_takes(self, digests: dict[str, str], records: list[Any]) -> None:
        """Every take that left the folder after S3 took its part 1 (mid-upload) kept
        what was uploaded of it: in an object of one of its states, in a salvaged
        stream's `.partial` (its first bytes), or, where a salvage cannot complete,
        in the upload itself, still open and its failed stream's. Not an upload whose
        registry entry Redis lost (restart_redis: only the lifecycle rule ends it)."""
        salvaged = [r.salvage_key for r in records if r.status == Status.SALVAGED]
        partials = [
            self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            for key in salvaged
            if key in digests
        ]
        ups = self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        # Only a revision's salvage cannot complete in the model: its key holds the
        # revision before. A first take's key is never another take's (free_key).
        failed = {r.s3_upload_id for r in records if r.status == Status.FAILED and r.revision > 1}
        kept = {u["UploadId"] for u in ups} & failed
        held = set(digests.values())
        for take in self.takes:
            if self.files.get(take.name) is take:
                continue
            started = {
                uid
                for uid, (n, digest) in self.first_parts.items()
                if n <= len(take.content) and hashlib.sha256(take.content[:n]).hexdigest() == digest
            }
            if not started - self.wiped_uploads:
                continue
            count("takes that left the folder mid-upload")
            if take.versions & held:
                continue
            if any(body and take.content.startswith(body) for body in partials):
                count("takes that left mid-upload, salvaged")
                continue
            if started & kept:
                count("takes that left mid-upload, kept in their upload")
                continue
            raise Violation(
                f"take {take.number} ({len(take.content)} bytes, names {take.names}) left "
                f"the folder mid-upload and is in no object, no .partial, no kept upload: "
                f"{self.log}"
            )
