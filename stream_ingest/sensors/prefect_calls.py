"""The two Prefect calls the sensor makes, behind plain callables so that tests can
inject fakes and never need a Prefect server.

Prefect is imported inside the functions: importing the sensor stays cheap, and a
process that injects its own callables never loads Prefect's client.
"""

from __future__ import annotations

from typing import Any, Protocol

from stream_ingest.flows.runs import RunCreator, RunRequest

# One per process: the sensor creates its runs one after another over one client.
_CREATOR = RunCreator()


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
    """The default trigger: create the run (or find it, by its idempotency key)."""
    return _CREATOR(request).id


def takes_batches(deployment: str) -> bool:
    """Whether the deployment's flow takes a batch of streams (`stream_ids`): one
    deployed from an older version gets a run per file."""
    return _CREATOR.takes(deployment, "stream_ids")


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


def describe_prefect_error(exc: BaseException) -> str:
    """One line for the retry log: unreachable (network) or failed (an API answer)."""
    import httpx

    detail = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return f"Prefect API unreachable ({detail})"
    return f"Prefect API call failed ({detail})"
