"""The Prefect API calls about stream runs, in one place: create a run of the
stream-ingest deployment (the sensor and `streams rerun` both do), and ask whether
runs are over (a rerun taking over a lease, the janitor).

Prefect is imported inside the functions: the sensor imports this module without
loading Prefect's client until it triggers its first run.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from stream_ingest.keys import is_text


def run_name(path: str, stream_id: str | None) -> str:
    """What the UI calls a stream's run: `ingest-<file name>`."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return f"ingest-{name or stream_id or 'stream'}"


@dataclass(frozen=True)
class RunRequest:
    """One flow run of a stream: the flow's parameters and the key that makes asking
    twice return the same run."""

    deployment: str
    path: str
    stream_id: str
    config: str
    idempotency_key: str
    tags: tuple[str, ...] = ()
    # A batch of finished small files (stream_ingest/flows/batch.py): `stream_id` is its
    # first stream, `path` its first file's.
    batch: tuple[str, ...] = ()

    @classmethod
    def first(cls, deployment: str, path: str, stream_id: str, config: str) -> RunRequest:
        """The sensor's request: a repeated key makes Prefect return the run it already
        created, which makes a retry after a crash between claim and trigger safe."""
        return cls(deployment, path, stream_id, config, f"stream-ingest:{stream_id}")

    @classmethod
    def rerun(cls, deployment: str, path: str, stream_id: str, config: str) -> RunRequest:
        """A new key per rerun: Prefect returns the old (failed) run for a repeated key."""
        key = f"rerun:{stream_id}:{uuid.uuid4()}"
        return cls(deployment, path, stream_id, config, key, ("rerun",))

    @classmethod
    def revision(
        cls, deployment: str, path: str, stream_id: str, config: str, number: int, state: str
    ) -> RunRequest:
        """The run that uploads revision `number` of a completed stream, for the file
        as it is (`state`): one per state, however many events announce it."""
        key = f"stream-ingest:{stream_id}:revision-{number}:{state}"
        return cls(deployment, path, stream_id, config, key, ("revision",))

    @classmethod
    def batch_of(cls, deployment: str, path: str, stream_ids: list[str], config: str) -> RunRequest:
        """One run for several finished small files, keyed by its first stream: a retry
        of the same batch (Prefect unreachable mid-request) returns the same run."""
        key = f"stream-ingest:batch:{stream_ids[0]}"
        return cls(deployment, path, stream_ids[0], config, key, ("batch",), tuple(stream_ids))

    def attempt(self, number: int) -> RunRequest:
        """The same request under a key of its own: Prefect returns the run of a
        repeated key even when that run ended without doing its work."""
        return replace(self, idempotency_key=f"{self.idempotency_key}:attempt-{number}")

    @property
    def sent_path(self) -> str:
        """The path as the run gets it: "" for a name with bytes that are not UTF-8,
        which cannot travel in JSON (the run takes the path from the stream's record)."""
        return self.path if is_text(self.path) else ""

    @property
    def parameters(self) -> dict[str, Any]:
        if self.batch:
            return {"stream_ids": list(self.batch), "config": self.config}
        return {"path": self.sent_path, "stream_id": self.stream_id, "config": self.config}

    @property
    def name(self) -> str:
        name = run_name(self.sent_path, self.stream_id)
        return f"{name} and {len(self.batch) - 1} more" if len(self.batch) > 1 else name

    @property
    def run_tags(self) -> list[str]:
        """`stream:<id>` for each stream the run uploads: the UI finds a stream's runs."""
        return [f"stream:{sid}" for sid in self.batch or (self.stream_id,)] + list(self.tags)


@dataclass(frozen=True)
class CreatedRun:
    id: str
    name: str


def create_stream_run(
    request: RunRequest, job_variables: dict[str, Any] | None = None
) -> CreatedRun:
    """Create the flow run without waiting for it, named and tagged with its stream:
    the run then need not write either itself while it starts (each is a write that a
    burst of new runs queues for on the server)."""
    from prefect.deployments import run_deployment

    run = run_deployment(
        name=request.deployment,
        parameters=request.parameters,
        idempotency_key=request.idempotency_key,
        tags=request.run_tags,
        flow_run_name=request.name,
        job_variables=job_variables,
        timeout=0,
        as_subflow=False,  # never nest under a flow run the caller happens to be in
    )
    return CreatedRun(str(run.id), run.name)


class RunCreator:
    """Creates stream runs over one client kept open, for a process that creates
    many one after another (the sensor): `run_deployment` opens a client per run,
    whose TLS context alone costs more than the run's creation, and reads the
    deployment each time. The deployment's id is kept by name; if it is gone (deleted
    and deployed again) it is read again once. Safe to call from several threads."""

    def __init__(self) -> None:
        self._client: Any = None
        self._deployments: dict[str, Any] = {}
        self._schemas: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(
        self, request: RunRequest, job_variables: dict[str, Any] | None = None
    ) -> CreatedRun:
        from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

        with self._lock:
            client = self._open()
            try:
                return self._create(client, request, job_variables)
            except (ObjectNotFound, PrefectHTTPStatusError) as exc:
                gone = isinstance(exc, ObjectNotFound) or exc.response.status_code == 404
                self._schemas.pop(request.deployment, None)
                if not gone or self._deployments.pop(request.deployment, None) is None:
                    raise  # not a 404, or the deployment was just read: it does not exist
                return self._create(client, request, job_variables)

    def takes(self, deployment: str, parameter: str) -> bool:
        """Whether `deployment` has the flow parameter `parameter` (a deployment made
        from an older version of the flow may not): read once per deployment."""
        with self._lock:
            client = self._open()
            if deployment not in self._schemas:
                found = client.read_deployment_by_name(deployment)
                self._deployments[deployment] = found.id
                schema = found.parameter_openapi_schema or {}
                self._schemas[deployment] = set(schema.get("properties") or ())
            return parameter in self._schemas[deployment]

    def _open(self) -> Any:
        if self._client is None:
            from prefect.client.orchestration import get_client

            client = get_client(sync_client=True)
            client.__enter__()
            self._client = client
        return self._client

    def _create(
        self, client: Any, request: RunRequest, job_variables: dict[str, Any] | None
    ) -> CreatedRun:
        from prefect.states import Scheduled

        deployment = self._deployments.get(request.deployment)
        if deployment is None:
            deployment = client.read_deployment_by_name(request.deployment).id
            self._deployments[request.deployment] = deployment
        run = client.create_flow_run_from_deployment(
            deployment,
            parameters=request.parameters,
            state=Scheduled(),
            name=request.name,
            tags=request.run_tags,
            idempotency_key=request.idempotency_key,
            job_variables=job_variables,
        )
        return CreatedRun(str(run.id), run.name)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                client.__exit__(None, None, None)


def ended_runs(run_ids: Iterable[str]) -> set[str]:
    """The runs among `run_ids` that Prefect reports in a final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    ids = [_uuid(r) for r in run_ids]
    ids = [i for i in ids if i is not None]
    if not ids:
        return set()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    return {str(r.id) for r in runs if r.state is not None and r.state.is_final()}


def run_is_over(flow_run_id: str) -> bool:
    """True if `flow_run_id` is a run that Prefect knows has ended; False when unsure
    (not a run id, an API hiccup): the conservative answer for a lease take-over."""
    try:
        return flow_run_id in ended_runs([flow_run_id])
    except Exception:
        return False


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
