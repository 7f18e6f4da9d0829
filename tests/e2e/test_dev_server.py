"""The local stack's Prefect server (stream_ingest/devstack/prefect_server.py) on SQLite: a burst
of concurrent writes, as many new recordings make, is answered without a 503
(Prefect's DEFERRED transactions got SQLITE_BUSY_SNAPSHOT, and the client then
waited 2-8 s per retry); and many open websockets, as many flow-run processes hold,
do not lock every HTTP request out (Prefect's SQLite request limit counted them)."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest
from websockets.protocol import State
from websockets.sync.client import connect

from stream_ingest.devstack.services import PrefectServer

pytestmark = pytest.mark.e2e
WRITERS, RUNS_EACH = 8, 6
SOCKETS = 110  # Prefect admits 100 requests at once on SQLite


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    server = PrefectServer(workdir=str(tmp_path_factory.mktemp("prefect")))
    server.start(timeout=90)
    yield server
    server.stop()


def _write_runs(api: str, flow_id: str, statuses: Counter[int], lock: threading.Lock) -> None:
    with httpx.Client(base_url=api, timeout=60) as http:
        for _ in range(RUNS_EACH):
            run = http.post(
                "/flow_runs/", json={"flow_id": flow_id, "state": {"type": "SCHEDULED"}}
            )
            answers = [run.status_code]
            if run.status_code < 300:
                for state in ("PENDING", "RUNNING", "COMPLETED"):
                    answers.append(
                        http.post(
                            f"/flow_runs/{run.json()['id']}/set_state",
                            json={"state": {"type": state}},
                        ).status_code
                    )
            with lock:
                statuses.update(answers)


def test_a_burst_of_concurrent_writes_gets_no_503(server: PrefectServer):
    flow_id = httpx.post(f"{server.api_url}/flows/", json={"name": "burst"}).json()["id"]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_write_runs, args=(server.api_url, flow_id, statuses, lock))
        for _ in range(WRITERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(statuses.values()) == WRITERS * RUNS_EACH * 4
    assert {code for code in statuses if code >= 300} == set(), statuses


def test_open_websockets_leave_room_for_requests(server: PrefectServer):
    url = server.api_url.replace("http://", "ws://", 1) + "/events/in"
    sockets = []
    try:
        for _ in range(SOCKETS):  # each connect needs a request slot of its own
            sockets.append(connect(url, subprotocols=["prefect"], open_timeout=10))
        health = httpx.get(f"{server.api_url}/health", timeout=10)
        assert health.status_code == 200
        assert all(ws.protocol.state is State.OPEN for ws in sockets)  # still held
    finally:
        for ws in sockets:
            ws.close()
