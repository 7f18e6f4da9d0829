import os
import sys

import pytest

from stream_ingest.workers.loading import (
    SET_WORKING_DIRECTORY,
    FlowCache,
    UnsupportedDeployment,
    module_name,
    working_directory,
)
from stream_ingest.workers.warm import process_alive, process_start

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_folder_comes_from_set_working_directory():
    steps = [{SET_WORKING_DIRECTORY: {"directory": "/srv/ingest"}}]
    assert working_directory(steps, None) == "/srv/ingest"
    assert working_directory(None, "/opt/code") == "/opt/code"


def test_a_pull_step_that_fetches_code_is_refused_with_the_way_out():
    steps = [{"prefect.deployments.steps.git_clone": {"repository": "https://x/y.git"}}]
    with pytest.raises(UnsupportedDeployment, match="process work pool"):
        working_directory(steps, None)


def test_entrypoints_become_module_names():
    assert module_name("flows/ingest.py:stream_ingest") == ("flows.ingest", "stream_ingest")
    assert module_name("flows.ingest:stream_ingest") == ("flows.ingest", "stream_ingest")
    with pytest.raises(UnsupportedDeployment):
        module_name("flows/ingest.py")


def test_the_flow_is_imported_once_per_entrypoint():
    cache = FlowCache()
    first = cache.load(ROOT, "flows/ingest.py:stream_ingest")
    assert first.name == "stream-ingest"
    assert cache.load(ROOT, "flows/ingest.py:stream_ingest") is first
    assert ROOT in sys.path
    with pytest.raises(UnsupportedDeployment, match="not a Prefect flow"):
        cache.load(ROOT, "flows/ingest.py:__doc__")


def test_a_process_is_known_by_pid_and_start_time():
    me = os.getpid()
    start = process_start(me)
    assert start is not None and process_alive(me, start)
    assert not process_alive(me, start + 1)  # a recycled pid is another process
