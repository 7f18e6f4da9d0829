"""The console's log format: Prefect's human lines (the default), or one JSON object
per line for a log shipper, rendered by structlog.

Every JSON line has the same keys: `timestamp` (UTC), `level`, `logger`, `event`
(the message), `host`, `run_id` (the flow run), `stream_id` and `take` (the stream
the run uploads and its file's identity), the last three null where a line belongs
to no run or no stream (the sensor, the worker's own lines). The run comes from the
record (Prefect's run loggers carry its id, on whichever thread they log) or from
the thread's run context; the stream from the run, bound by the flow once it knows
its stream (`bind_stream`).

The switch swaps the console handlers that Prefect's logging configuration put on
the root logger and on a few others (PrefectConsoleHandler, which styles lines with
rich) for plain stream handlers, and back; the handlers that send run logs to the
Prefect API are left alone, so the UI shows the same lines either way.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from typing import Any, Literal

import structlog
from prefect.logging.handlers import PrefectConsoleHandler

LogFormat = Literal["human", "json"]
HOST = socket.gethostname()

_streams: dict[str, tuple[str, str]] = {}  # flow run id -> (stream id, take)
_swapped: dict[logging.Handler, tuple[logging.Logger, PrefectConsoleHandler]] = {}
_lock = threading.Lock()


def bind_stream(run_id: str, stream_id: str, take: str) -> None:
    """The lines of run `run_id` are about stream `stream_id` of take `take`."""
    if run_id:
        _streams[run_id] = (stream_id, take)


def unbind_stream(run_id: str) -> None:
    _streams.pop(run_id, None)


def _run_id(record: logging.LogRecord | None) -> str | None:
    run_id = getattr(record, "flow_run_id", None)
    if run_id and run_id != "<unknown>":
        return str(run_id)
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        return str(context.flow_run.id)
    return None


def _add_run_and_stream(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the host, run, stream and take of the line."""
    run_id = _run_id(event.get("_record"))
    stream_id, take = _streams.get(run_id or "", (None, None))
    event.update(host=HOST, run_id=run_id, stream_id=stream_id, take=take)
    return event


def json_formatter() -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_run_and_stream,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )


def use_format(fmt: LogFormat) -> None:
    """Write this process's console lines as `fmt` from now on (idempotent)."""
    with _lock:
        if fmt == "json":
            _to_json()
        else:
            _to_human()


def _loggers() -> list[logging.Logger]:
    # list() copies in one step: another thread may add a logger (a lazy import) while
    # this walks them, and a dict that changes size under iteration raises.
    every = list(logging.root.manager.loggerDict.values())
    named = [v for v in every if isinstance(v, logging.Logger)]
    return [logging.root, *named]


def _to_json() -> None:
    for logger in _loggers():
        for handler in list(logger.handlers):
            if not isinstance(handler, PrefectConsoleHandler):
                continue
            plain = logging.StreamHandler(getattr(handler, "stream", None) or sys.stderr)
            plain.setLevel(handler.level)
            plain.setFormatter(json_formatter())
            for log_filter in handler.filters:
                plain.addFilter(log_filter)
            logger.removeHandler(handler)
            logger.addHandler(plain)
            _swapped[plain] = (logger, handler)


def _to_human() -> None:
    for plain, (logger, console) in list(_swapped.items()):
        logger.removeHandler(plain)
        logger.addHandler(console)
        del _swapped[plain]
