"""Pure decisions of the tail loop: which parts to upload next, when a stream ended.

Time is passed in (no clock reads here), so "idle for N seconds" is tested with plain
numbers instead of sleeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from stream_ingest.parts import PartRange, full_parts, part_offset, part_size
from stream_ingest.records import PartRecord


@dataclass
class Growth:
    """Tracks when the source last changed (size or mtime: a head rewrite at close
    changes mtime only)."""

    size: int = -1
    mtime_ns: int = -1
    changed_at: float = 0.0

    def observe(self, size: int, mtime_ns: int, now: float) -> bool:
        changed = (size, mtime_ns) != (self.size, self.mtime_ns)
        if changed:
            self.size, self.mtime_ns, self.changed_at = size, mtime_ns, now
        return changed


@dataclass
class PartPlanner:
    """Walks the part plan: the parts that are done, in flight, and next."""

    base: int
    done: set[int] = field(default_factory=set)
    in_flight: set[int] = field(default_factory=set)

    def ready(self, size: int, limit: int) -> list[PartRange]:
        """Up to `limit` full parts that lie within `size` bytes and are neither done
        nor in flight, lowest numbers first."""
        taken = self.done | self.in_flight
        return [p for p in full_parts(size, self.base) if p.number not in taken][:limit]

    def covered(self) -> int:
        """Bytes the done and in-flight parts require the file to still have."""
        top = max(self.done | self.in_flight, default=0)
        return part_offset(top, self.base) + part_size(top, self.base) if top else 0

    def settle(self, parts: Mapping[int, PartRecord]) -> None:
        """Count as done exactly the full parts in `parts` (a short last part uploaded
        by finalize is uploaded again once the file has grown past it)."""
        self.done = {k for k, p in parts.items() if p.size == part_size(k, self.base)}


class WriterState(StrEnum):
    """What the OS says about the file's writers (flows/writers.py)."""

    WRITING = "writing"  # a process has it open for writing: still recording
    CLOSED = "closed"  # nobody has it open for writing
    UNKNOWN = "unknown"  # cannot be known here (network mount, no permission, no /proc)


def stream_ended(
    *,
    now: float,
    last_change: float,
    closed_hint: bool,
    writers: WriterState,
    settle_seconds: float,
    idle_timeout_seconds: float,
    empty: bool = False,
) -> bool:
    """A recording has ended when no process has the file open for writing and it has
    not changed for a short settle (a writer may reopen it to patch its head). A file
    still open for writing is still recording, however long it stalls (a low-rate
    muxer, a camera that reconnects). Only where the writers cannot be known does the
    old rule apply: the sensor saw it closed and it settled, or it has not changed for
    the idle timeout. An empty file nobody writes has most likely not started yet (a
    recorder that creates it first and opens it later): only the idle timeout ends it."""
    quiet = now - last_change
    if writers == WriterState.WRITING:
        return False
    if writers == WriterState.CLOSED:
        return quiet >= (idle_timeout_seconds if empty else settle_seconds)
    return (closed_hint and quiet >= settle_seconds) or quiet >= idle_timeout_seconds
