"""The two Prefect calls the sensor makes, behind plain callables so that tests can
inject fakes and never need a Prefect server.

Prefect is imported inside the functions: importing the sensor stays cheap, and a
process that injects its own callables never loads Prefect's client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from stream_ingest.errors import ConfigurationError


@dataclass(frozen=True)
class RunRequest:
    """One flow run the sensor asks for: the flow's parameters and the key that makes
    asking twice return the same run."""

    deployment: str
    path: str
    stream_id: str

    @property
    def parameters(self) -> dict[str, str]:
        return {"path": self.path, "stream_id": self.stream_id}

    @property
    def idempotency_key(self) -> str:
        return f"stream-ingest:{self.stream_id}"


class TriggerFn(Protocol):
    """Create (or find, by idempotency key) the flow run; return its id."""

    def __call__(self, request: RunRequest, /) -> str: ...


class EmitFn(Protocol):
    """Send one Prefect event (the signature of `prefect.events.emit_event`)."""

    def __call__(
        self,
        *,
        event: str,
        resource: dict[str, str],
        payload: dict[str, Any],
        related: list[dict[str, str]] | None = None,
    ) -> object: ...


def run_deployment_trigger(request: RunRequest) -> str:
    """The default trigger: `run_deployment` without waiting for the run.

    A repeated idempotency key makes Prefect return the run it already created, which
    is what makes a retry after a crash between claim and trigger safe.
    """
    from prefect.deployments import run_deployment

    run = run_deployment(
        name=request.deployment,
        parameters=request.parameters,
        idempotency_key=request.idempotency_key,
        timeout=0,
        as_subflow=False,  # never nest under a flow run the caller happens to be in
    )
    return str(run.id)


def prefect_emit(
    *,
    event: str,
    resource: dict[str, str],
    payload: dict[str, Any],
    related: list[dict[str, str]] | None = None,
) -> object:
    """The default emitter: `prefect.events.emit_event` (sent by a background worker;
    it returns None when events are disabled)."""
    from prefect.events import emit_event

    return emit_event(event=event, resource=resource, payload=payload, related=related)


def require_api_url() -> None:
    """Without PREFECT_API_URL, Prefect's client starts a throwaway ephemeral server:
    runs would land where no worker looks. Fail at start instead."""
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise ConfigurationError(
            "PREFECT_API_URL is not set: the sensor needs the Prefect API that the "
            "workers use (e.g. http://127.0.0.1:4200/api)"
        )


def describe_prefect_error(exc: BaseException) -> str:
    """One line for the retry log: unreachable (network) or failed (an API answer)."""
    import httpx

    detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return f"Prefect API unreachable ({detail})"
    return f"Prefect API call failed ({detail})"
