"""The sensor's loop: observer -> queue -> StreamTrigger, with catch-up scans,
retries that never drop an event, and a clean stop on SIGINT/SIGTERM.

`run_sensor(settings)` is what `stream-ingest sensor` calls.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

from blocks.checkpoints import CheckpointStore
from sensors.events import FileFilter, SensorEvent, watch_root
from sensors.prefect_calls import (
    EmitFn,
    TriggerFn,
    prefect_emit,
    require_api_url,
    run_deployment_trigger,
)
from sensors.trigger import StreamTrigger, TriggerFailed
from sensors.watcher import EVENT_TYPES, EnqueueHandler, make_observer, scan
from stream_ingest.errors import CheckpointUnavailable, ConfigurationError
from stream_ingest.settings import Settings

log = logging.getLogger("stream_ingest.sensor")

_REDIS_PREFIX = "Redis checkpoint store unavailable: "


class Sensor:
    """One watch folder, one queue, one processing loop (in the thread that calls
    `run`). Build it, then `run(stop)` until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        store: CheckpointStore,
        *,
        trigger: TriggerFn = run_deployment_trigger,
        emit: EmitFn = prefect_emit,
        rescan_seconds: float | None = 300.0,
        poll_seconds: float = 1.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        self.settings = settings
        self.root = watch_root(settings)
        self.wanted = FileFilter.from_settings(settings)
        self.events: queue.Queue[SensorEvent] = queue.Queue()
        self.trigger = StreamTrigger(
            store,
            deployment=settings.deployment,
            part_base_bytes=settings.part_size_bytes,
            trigger=trigger,
            emit=emit,
        )
        # Rescans recover what inotify can drop (queue overflow, files written into
        # a new subfolder before its watch existed); the in-memory map keeps them cheap.
        self.rescan_seconds = rescan_seconds
        self.poll_seconds = poll_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # Set once the start-up scan has been handled: from then on every file that
        # was in the folder at start has its run (tests and health checks wait on it).
        self.caught_up = threading.Event()

    def run(self, stop: threading.Event) -> None:
        if not self.root.is_dir():
            raise ConfigurationError(
                f"watch folder {self.root} does not exist (STREAM_INGEST_WATCH_DIR)"
            )
        observer = make_observer(self.settings.use_polling, self.poll_seconds)
        handler = EnqueueHandler(self.events, self.wanted)
        observer.schedule(handler, str(self.root), recursive=True, event_filter=EVENT_TYPES)
        with observer:
            kind = "polling" if self.settings.use_polling else "inotify"
            log.info(
                "sensor watching %s (%s) for deployment %s",
                self.root,
                kind,
                self.settings.deployment,
            )
            # The observer is already running, so nothing created during the scan is
            # missed; files reported twice are deduped by their identity.
            self._scan(stop, "catch-up")
            self.caught_up.set()
            next_scan = _next(self.rescan_seconds)
            while not stop.is_set():
                if time.monotonic() >= next_scan:
                    self._scan(stop, "periodic")
                    next_scan = _next(self.rescan_seconds)
                try:
                    event = self.events.get(timeout=0.25)
                except queue.Empty:
                    self._check_root()
                    continue
                self.process(event, stop)
        pending = self.events.qsize()
        if pending:
            # Appearances are found again by the next start's scan; hints are lost
            # (the flow falls back to its idle timeout and its own stat).
            log.warning("sensor stopped with %d events unprocessed", pending)
        log.info("sensor stopped")

    def _check_root(self) -> None:
        """A deleted or unmounted watch folder ends its inotify watch for good: stop
        with an error so the supervisor restarts us, rather than watch nothing."""
        if not self.root.is_dir():
            raise ConfigurationError(f"watch folder {self.root} disappeared; stopping")

    def _scan(self, stop: threading.Event, what: str) -> None:
        count = 0
        for event in scan(self.root, self.wanted):
            if stop.is_set():
                return
            count += 1
            self.process(event, stop)
        log.log(
            logging.INFO if what == "catch-up" else logging.DEBUG, "%s scan: %d files", what, count
        )

    def process(self, event: SensorEvent, stop: threading.Event) -> bool:
        """Handle `event`, retrying with capped exponential backoff while Redis or
        Prefect is unavailable. False if it was dropped (unexpected error) or `stop`
        was set before it succeeded."""
        delay = self.backoff_initial
        while True:
            try:
                self.trigger.handle(event)
                return True
            except CheckpointUnavailable as exc:
                reason = f"Redis unreachable ({str(exc).removeprefix(_REDIS_PREFIX)})"
            except TriggerFailed as exc:
                reason = exc.reason
            except Exception:
                # A bug or an unexpected answer: retrying the same event would wedge
                # the queue, so it is dropped loudly (a rescan will see the file again).
                log.exception("dropping %s after an unexpected error", event)
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
    settings: Settings,
    stop_event: threading.Event | None = None,
    *,
    store: CheckpointStore | None = None,
    trigger: TriggerFn | None = None,
    emit: EmitFn | None = None,
    rescan_seconds: float | None = 300.0,
) -> None:
    """Run the sensor until SIGINT/SIGTERM (main thread) or `stop_event` is set.

    Blocks. Builds the CheckpointStore from `settings.redis_url`; `trigger` and `emit`
    default to Prefect's `run_deployment` and `emit_event`. Raises ConfigurationError
    if the watch folder is missing or (with the default trigger) PREFECT_API_URL is unset.
    """
    stop = stop_event or threading.Event()
    # Prefect's logging setup leaves the root logger at WARNING; the sensor's INFO
    # lines (what it started, when it stopped) are its operator's main output.
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    if trigger is None:
        require_api_url()
    store = store or CheckpointStore.from_url(
        settings.redis_url.get_secret_value(), settings.redis_namespace
    )
    sensor = Sensor(
        settings,
        store,
        trigger=trigger or run_deployment_trigger,
        emit=emit or prefect_emit,
        rescan_seconds=rescan_seconds,
    )
    with stop_on_signals(stop):
        sensor.run(stop)
