"""Where a long-lived component (the warm worker, the sensor) turns on what the
IngestConfig block asks for at its start: the console's log format
(stream_ingest/flows/logs.py) and, when `metrics_enabled`, the Prometheus endpoint
(stream_ingest/metrics.py) on its port. Both are read once, at start: a change
applies at the next start.

A port another process holds gives one error line and no endpoint; the component
runs on without it (its uploads matter more than its figures).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from stream_ingest import metrics
from stream_ingest.blocks.config import IngestConfig, load_config
from stream_ingest.flows import logs
from stream_ingest.records import StreamRecord

log = logging.getLogger("stream_ingest.telemetry")
Component = Literal["worker", "sensor"]

_servers: dict[int, WSGIServer] = {}
_lock = threading.Lock()


def start(
    config: IngestConfig,
    component: Component,
    streams: Callable[[], Iterable[StreamRecord]] | None = None,
) -> int | None:
    """Apply `config`'s log format; serve metrics if it enables them, the streams
    figures read with `streams` (default: the config's checkpoint store). Returns
    the port served, None if none."""
    logs.use_format(config.log_format)
    if not config.metrics_enabled:
        return None
    store = config.checkpoints
    metrics.watch_streams(streams or (lambda: store.streams.list()))
    port = config.metrics_worker_port if component == "worker" else config.metrics_sensor_port
    return port if serve(port, f"metrics_{component}_port") else None


def start_from_block(component: Component) -> int | None:
    """`start` with the block every run of this process uses by default
    (STREAM_INGEST_CONFIG_BLOCK, else "stream-ingest"); a block that cannot be read
    is one warning line, and the process runs on with Prefect's defaults."""
    try:
        config = load_config()
    except Exception as exc:
        log.warning("no metrics or log format from the IngestConfig block: %s", exc)
        return None
    return start(config, component)


def serve(port: int, field: str = "the port") -> bool:
    """Serve the metrics on `port` (all interfaces), once per process; False, with
    one error line, if the port cannot be bound."""
    with _lock:
        if port in _servers:
            return True
        try:
            server, _thread = start_http_server(port, registry=metrics.REGISTRY)
        except OSError as exc:
            log.error(
                "metrics endpoint not started: port %d: %s (choose another %s in the "
                "IngestConfig block)",
                port,
                exc.strerror or exc,
                field,
            )
            return False
        _servers[port] = server
    log.info("metrics at http://0.0.0.0:%d/metrics", port)
    return True


def stop(port: int) -> None:
    """Stop serving on `port` (tests, and a component that stops)."""
    with _lock:
        server = _servers.pop(port, None)
    if server is not None:
        server.shutdown()
        server.server_close()
