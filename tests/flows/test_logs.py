"""The config block's log_format: JSON lines carrying the stream, take, run and host
of a real stream flow's lines; human lines again when switched back."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.logging.handlers import PrefectConsoleHandler

from stream_ingest.flows import logs
from stream_ingest.flows.ingest import stream_ingest
from tests.conftest import edit_config
from tests.flows.helpers import payload

pytestmark = pytest.mark.usefixtures("registered")
KEYS = {"timestamp", "level", "logger", "event", "host", "run_id", "stream_id", "take"}


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """A console handler on the root logger as Prefect's logging.yml puts it there,
    writing into a buffer the test reads."""
    out = io.StringIO()
    handler = PrefectConsoleHandler(stream=out)
    logging.root.addHandler(handler)
    yield out
    logs.use_format("human")
    logging.root.removeHandler(handler)


def test_json_lines_carry_the_stream_take_run_and_host(registered, console) -> None:
    edit_config(log_format="json")
    src = Path(registered.watch_dir) / "cam.mp4"
    src.write_bytes(payload(1000, seed=4))

    result = stream_ingest(path=str(src))

    # The engine's first lines come before the flow reads the block (a warm worker
    # switches at its start, before any run): JSON from the switch on, every line.
    text = console.getvalue()
    assert "{" in text, text
    lines = [json.loads(line) for line in text[text.index("{") :].splitlines()]
    assert all(set(line) >= KEYS for line in lines), lines
    ours = [line for line in lines if line["stream_id"] == result["stream_id"]]
    completed = [line for line in ours if " completed: s3://" in line["event"]]
    assert len(completed) == 1, lines
    assert (
        completed[0]
        | {
            "take": result["identity"],
            "run_id": result["flow_run_id"],
            "host": socket.gethostname(),
            "level": "info",
        }
        == completed[0]
    )


def test_human_lines_by_default_and_after_switching_back(registered, console) -> None:
    logging.getLogger("stream_ingest.test").warning("before")
    logs.use_format("json")
    logging.getLogger("stream_ingest.test").warning("during")
    logs.use_format("human")
    logging.getLogger("stream_ingest.test").warning("after")

    before, during, after = console.getvalue().splitlines()
    assert json.loads(during)["event"] == "during"
    for line, text in ((before, "before"), (after, "after")):
        assert text in line and not line.startswith("{")
