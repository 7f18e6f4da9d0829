"""The sensor's loop: observer -> queue -> StreamTrigger, with catch-up scans,
retries that never drop an event, and a clean stop on SIGINT/SIGTERM.

`run_sensor(config, watch)` is what `stream-ingest sensor` calls.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from stream_ingest import metrics
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.config import IngestConfig, load_config
from stream_ingest.blocks.reload import Reloader
from stream_ingest.errors import CheckpointUnavailable, ConfigurationError
from stream_ingest.flows import telemetry
from stream_ingest.options import IngestOptions
from stream_ingest.sensors.batching import any_batchable
from stream_ingest.sensors.events import FileFilter, ReleaseGone, SensorEvent, watch_root
from stream_ingest.sensors.prefect_calls import (
    EmitFn,
    TriggerFn,
    prefect_emit,
    run_deployment_trigger,
    takes_batches,
)
from stream_ingest.sensors.trigger import StreamTrigger, TriggerFailed
from stream_ingest.sensors.watcher import EVENT_TYPES, EnqueueHandler, make_observer, scan
from stream_ingest.settings import DEFAULT_CONFIG_BLOCK, config_block_name

log = logging.getLogger("stream_ingest.sensor")
# How often the loop touches its heartbeat file (--heartbeat): a health check reads
# the file's age, so a wedged loop shows as unhealthy within a minute or so.
HEARTBEAT_SECONDS = 5.0
# New streams wait for the run loop's queue to be drained before their runs are
# requested, so that finished small files arriving together share a run
# (stream_ingest/sensors/batching.py): at most this long, and, where one of them could
# join a batch, until no event came for LINGER_SECONDS. A live recording alone waits
# for neither.
HOLD_SECONDS = 1.0
LINGER_SECONDS = 0.05


Reload = Callable[[], IngestConfig]


class Sensor:
    """One watch folder, one queue, one processing loop (in the thread that calls
    `run`). Build it, then `run(stop)` until `stop` is set.

    `options` and `store` come from the IngestConfig block; `reload` (if given) is
    called every `reload_seconds` to pick up changes saved in the UI: extensions,
    ignore patterns, deployment and checkpoint store apply at once; a new watch folder
    or observer kind needs a restart, which the log says."""

    def __init__(
        self,
        options: IngestOptions,
        store: CheckpointStore,
        *,
        config: str = DEFAULT_CONFIG_BLOCK,
        watch: str | None = None,
        trigger: TriggerFn = run_deployment_trigger,
        emit: EmitFn = prefect_emit,
        takes_batches: Callable[[str], bool] = takes_batches,
        reload: Reload | None = None,
        reload_seconds: float = 10.0,
        rescan_seconds: float | None = 300.0,
        poll_seconds: float = 1.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        heartbeat: Path | None = None,
    ) -> None:
        self.options = options
        self.watch = watch  # --watch: this host's folder, whatever the block says
        self.root = watch_root(watch or options.watch_dir)
        self.handler = EnqueueHandler(queue.Queue(), FileFilter.of(options, self.root))
        self.events: queue.Queue[SensorEvent] = self.handler.events
        self.trigger = StreamTrigger(
            store,
            deployment=options.deployment,
            config=config,
            watch_dir=str(self.root),
            trigger=trigger,
            follow_symlinks=options.follow_symlinks,
            emit=emit,
            batch_max=options.batch_small_files,
            small_bytes=options.part_size_mib * 1024 * 1024,
            takes_batches=takes_batches,
            detect_writers=options.detect_writers,
        )
        self._held_since: float | None = None
        self.reload = reload
        self.reload_seconds = reload_seconds
        self._applied: IngestConfig | None = None  # the last config _reload applied
        # Rescans recover what inotify can drop (queue overflow, files written into
        # a new subfolder before its watch existed); the in-memory map keeps them cheap.
        self.rescan_seconds = rescan_seconds
        self.poll_seconds = poll_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # Set once the start-up scan has been handled: from then on every file that
        # was in the folder at start has its run (tests and health checks wait on it).
        self.caught_up = threading.Event()
        self.heartbeat = heartbeat
        self._next_beat = 0.0

    @property
    def wanted(self) -> FileFilter:
        return self.handler.wanted

    def run(self, stop: threading.Event) -> None:
        if not self.root.is_dir():
            raise ConfigurationError(
                f"watch folder {self.root} does not exist (--watch, or watch_dir in the "
                "IngestConfig block)"
            )
        observer = make_observer(self.options.use_polling, self.poll_seconds)
        observer.schedule(self.handler, str(self.root), recursive=True, event_filter=EVENT_TYPES)
        with observer:
            kind = "polling" if self.options.use_polling else "inotify"
            log.info(
                "sensor watching %s (%s) for deployment %s",
                self.root,
                kind,
                self.options.deployment,
            )
            # The observer is already running, so nothing created during the scan is
            # missed; files reported twice are deduped by their identity.
            self._scan(stop, "catch-up")
            self.caught_up.set()
            next_scan = _next(self.rescan_seconds)
            next_reload = _next(self.reload_seconds if self.reload else None)
            while not stop.is_set():
                self._beat()
                now = time.monotonic()
                if now >= next_reload:
                    self._reload()
                    next_reload = _next(self.reload_seconds)
                if now >= next_scan:
                    self._scan(stop, "periodic")
                    next_scan = _next(self.rescan_seconds)
                waiting = bool(self.trigger.waiting or self.trigger.batches)
                try:
                    event = self.events.get(timeout=LINGER_SECONDS if waiting else 0.25)
                except queue.Empty:
                    if waiting:
                        self.flush(stop)
                    self._check_root()
                    continue
                self.process(event, stop)
        pending = self.events.qsize() + len(self.trigger.waiting)
        if pending:
            # Appearances are found again by the next start's scan; hints are lost
            # (the flow falls back to its idle timeout and its own stat).
            log.warning("sensor stopped with %d events unprocessed", pending)
        log.info("sensor stopped")

    def _beat(self) -> None:
        """Touch the heartbeat file, at most every HEARTBEAT_SECONDS. Only the loop
        beats: while an event waits for Redis or Prefect to come back (process) the
        file ages, and the sensor reads as unhealthy, which it is (nothing starts)."""
        now = time.monotonic()
        if self.heartbeat is None or now < self._next_beat:
            return
        self._next_beat = now + HEARTBEAT_SECONDS
        try:
            self.heartbeat.touch()
        except OSError as exc:
            log.warning("could not touch the heartbeat file %s: %s", self.heartbeat, exc)

    def _reload(self) -> None:
        """Apply the block's current options; keep the old ones if it cannot be read."""
        assert self.reload is not None
        try:
            config = self.reload()
        except Exception as exc:
            log.warning("could not reload the IngestConfig block (%s); keeping the last", exc)
            return
        if config is self._applied:  # unchanged (blocks/reload.py): nothing to compare
            return
        self._applied = config
        new = config.options()
        if new != self.options:
            log.info("IngestConfig changed; applying it")
            if not self.watch and watch_root(new.watch_dir) != self.root:
                log.warning("watch_dir is now %s: restart the sensor to watch it", new.watch_dir)
            if new.use_polling != self.options.use_polling:
                log.warning("use_polling changed: restart the sensor to apply it")
            self.handler.wanted = FileFilter.of(new, self.root)
            self.trigger.deployment = new.deployment
            self.trigger.follow_symlinks = new.follow_symlinks
            self.trigger.batch_max = new.batch_small_files
            self.trigger.small_bytes = new.part_size_mib * 1024 * 1024
            self.trigger.detect_writers = new.detect_writers
            self.options = new
        if not config.checkpoints.same_place(self.trigger.store):
            log.info("checkpoint store changed; using namespace %s", config.checkpoints.namespace)
            self.trigger.store = config.checkpoints

    def _check_root(self) -> None:
        """A deleted or unmounted watch folder ends its inotify watch for good: stop
        with an error so the supervisor restarts us, rather than watch nothing."""
        if not self.root.is_dir():
            raise ConfigurationError(f"watch folder {self.root} disappeared; stopping")

    def _scan(self, stop: threading.Event, what: str) -> None:
        self.process(ReleaseGone(), stop)
        count = 0
        for event in scan(self.root, self.wanted):
            if stop.is_set():
                return
            count += 1
            self._beat()  # a large folder's catch-up scan is work, not a hang
            self.process(event, stop)
        if self.trigger.waiting or self.trigger.batches:
            self.flush(stop)  # every file found has its run when the scan is over
        log.log(
            logging.INFO if what == "catch-up" else logging.DEBUG, "%s scan: %d files", what, count
        )

    def process(self, event: SensorEvent, stop: threading.Event) -> bool:
        """Handle `event`, retrying with capped exponential backoff while Redis or
        Prefect is unavailable, then request the runs of new streams when they are
        due (`flush`). False if it was dropped (unexpected error) or `stop` was set
        before it succeeded."""
        handled = self._retrying(lambda: self.trigger.handle(event), event, stop)
        if handled:
            metrics.SENSOR_EVENTS.labels(type(event).__name__).inc()
        if self._flush_due():
            return self.flush(stop) and handled
        return handled

    def _flush_due(self) -> bool:
        """Now, unless more events wait (or may come at once) that could join a batch."""
        trigger = self.trigger
        if not trigger.waiting and not trigger.batches:
            self._held_since = None
            return False
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        if now - self._held_since >= HOLD_SECONDS:
            return True
        if self.events.qsize() == 0:
            return not any_batchable(list(trigger.waiting.values()))  # else: the linger
        return False

    def flush(self, stop: threading.Event) -> bool:
        """Request the runs of the streams waiting for one (StreamTrigger.flush),
        retrying as `process` does."""
        self._held_since = None
        done = self._retrying(self.trigger.flush, "the waiting streams' runs", stop)
        if not done and not stop.is_set():
            # An unexpected error: trying again at once would repeat it. Each of these
            # streams is claimed and `detected` without a run: the next scan starts it.
            self.trigger.waiting.clear()
            self.trigger.batches.clear()
        return done

    def _retrying(self, call: Callable[[], None], what: object, stop: threading.Event) -> bool:
        delay = self.backoff_initial
        while True:
            try:
                call()
                return True
            except CheckpointUnavailable as exc:
                reason = f"Redis unreachable ({exc.detail})"
            except TriggerFailed as exc:
                reason = exc.reason
            except Exception:
                # A bug or an unexpected answer: retrying the same event would wedge
                # the queue, so it is dropped loudly (a rescan will see the file again).
                log.exception("dropping %s after an unexpected error", what)
                return False
            log.warning("%s; retrying in %s s", reason, f"{delay:g}")
            if stop.wait(delay):
                return False
            delay = min(delay * 2, self.backoff_max)


def _next(interval: float | None) -> float:
    return time.monotonic() + interval if interval else float("inf")


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGINT/SIGTERM, restoring the old handlers afterwards. Python
    only allows signal handlers in the main thread; elsewhere the caller stops us
    through `stop`. A second signal gets the previous handler (Ctrl-C twice kills)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only set the flag: logging here could re-enter a handler lock the
        # interrupted main thread holds. The loop notices within 0.25 s.
        stop.set()
        for sig in signals:
            signal.signal(sig, previous[sig])

    for sig in signals:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig in signals:
            signal.signal(sig, previous[sig])


def run_sensor(
    config: str | None = None,
    watch: str | None = None,
    stop_event: threading.Event | None = None,
    *,
    trigger: TriggerFn = run_deployment_trigger,
    emit: EmitFn = prefect_emit,
    load: Callable[[str], IngestConfig] = load_config,
    heartbeat: Path | None = None,
) -> None:
    """Run the sensor until SIGINT/SIGTERM (main thread) or `stop_event` is set.

    Blocks. Loads the IngestConfig block `config` with `load` (and reloads it while
    running); `watch` overrides its watch folder for this host. Raises
    ConfigurationError if the block or the watch folder is missing, or PREFECT_API_URL
    is unset. `trigger` and `emit` default to Prefect's run_deployment and emit_event.
    With `heartbeat`, the loop touches that file every HEARTBEAT_SECONDS while it runs.
    """
    stop = stop_event or threading.Event()
    # Prefect's logging setup leaves the root logger at WARNING; the sensor's INFO
    # lines (what it started, when it stopped) are its operator's main output.
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    name = config or config_block_name()
    block = load(name)
    sensor = Sensor(
        block.options(),
        block.checkpoints,
        config=name,
        watch=watch,
        trigger=trigger,
        emit=emit,
        reload=(reloader := Reloader(name, load)),
        heartbeat=heartbeat,
    )
    # The store the sensor uses now: a changed block's new store after a reload.
    port = telemetry.start(block, "sensor", streams=lambda: sensor.trigger.store.streams.list())
    try:
        with stop_on_signals(stop):
            sensor.run(stop)
    finally:
        reloader.close()
        if port is not None:
            telemetry.stop(port)
