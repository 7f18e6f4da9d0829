"""Which warm worker process runs a flow run, as written in its `infrastructure_pid`.

`warm:<host>:<pid>:<start>` names one process for its whole life (`start` is its
start time in clock ticks since boot, so a recycled pid does not pass for it). A
worker that starts finds the runs of its host whose process is gone: they died with
it (OOM kill, SIGKILL, power loss) and nothing else will ever end them.

A worker that died after claiming a run (Pending) but before writing its owner left a
run that no worker will ever pick up either: once it has been Pending far longer than
any worker takes from claim to start, it is scheduled again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

PREFIX = "warm"
# Claim to start is a deployment read, the flow's import (once) and a run read:
# seconds, even on a busy server that is asked again (stream_ingest.workers.warm).
PENDING_STALE_SECONDS = 120.0


@dataclasses.dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: int

    def __str__(self) -> str:
        return f"{PREFIX}:{self.host}:{self.pid}:{self.start}"


def parse_owner(infrastructure_pid: str | None) -> Owner | None:
    """The owner a warm worker wrote, or None for anything else (a process worker's
    plain pid, nothing at all)."""
    parts = (infrastructure_pid or "").split(":")
    if len(parts) != 4 or parts[0] != PREFIX:
        return None
    try:
        return Owner(parts[1], int(parts[2]), int(parts[3]))
    except ValueError:
        return None


def orphaned(infrastructure_pid: str | None, host: str, alive: Callable[[int, int], bool]) -> bool:
    """True when a warm worker of this host ran it and that process is gone. Runs of
    other hosts are theirs to judge; `alive(pid, start)` asks this host's kernel."""
    owner = parse_owner(infrastructure_pid)
    return owner is not None and owner.host == host and not alive(owner.pid, owner.start)


def stale_claim(infrastructure_pid: str | None, pending_for: float) -> bool:
    """True for a run Pending for PENDING_STALE_SECONDS with no owner written: its
    worker died between the claim and the start."""
    return not infrastructure_pid and pending_for >= PENDING_STALE_SECONDS
