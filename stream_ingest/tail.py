"""Pure decisions of the tail loop: which parts to upload next, when a stream ended.

Time is passed in (no clock reads here), so "idle for N seconds" is tested with plain
numbers instead of sleeps.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from stream_ingest.parts import MAX_PARTS, PartPlan, PartRange, part_offset, part_size
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


# A file's (size, mtime_ns) when a part was read from it.
FileState = tuple[int, int]
# Older than any kernel's timestamp granularity (a jiffy, at most 10 ms): a write
# after a stat that saw an mtime this old must move the mtime.
MTIME_GRANULARITY_NS = 50_000_000


def settled_state(size: int, mtime_ns: int, now_ns: int) -> FileState | None:
    """The state that bytes read from now on belong to, if the stat can vouch for it:
    when its mtime is older than the clock's granularity, any later write moves the
    mtime, so a file that still shows this state at the end has not changed since.
    None when the mtime is too recent to tell (a file being written)."""
    return (size, mtime_ns) if now_ns - mtime_ns > MTIME_GRANULARITY_NS else None


def trusted_parts(read_at: Mapping[int, FileState], final: FileState) -> set[int]:
    """The parts read while the file was already in its final state: their bytes are
    the final bytes, with no need to read them again."""
    return {number for number, state in read_at.items() if state == final}


# Parts per task run when a file is far ahead of its upload: 16 x 8 MiB = 128 MiB.
BATCH_PARTS = 16
# Parts per window of a live stream: 8 x 8 MiB, 13 s of a 5 MB/s camera.
WINDOW_PARTS = 8


def window_for(
    ready: list[PartRange], in_flight: int, done: Collection[int] = (), width: int = 1
) -> range | None:
    """The parts of a window task run for a live stream that is caught up, or nearly:
    nothing in flight and no more full parts ready than the window sends at once
    (`width`; one: the recorder is less than two parts ahead). The window sends those
    parts and then each next one as its bytes arrive: one task run (three API events)
    per WINDOW_PARTS parts instead of one per part, and one part in memory while it
    keeps up. A stream further ahead goes up in parallel tasks (plan_tasks).

    The window ends before the first `done` part after its first: a resumed
    checkpoint can have holes (parts finish out of order), and a window sends every
    part of its range."""
    if in_flight or not 1 <= len(ready) <= max(1, width):
        return None
    first = ready[0].number
    return range(first, min([n for n in done if n > first] + [first + WINDOW_PARTS]))


def plan_tasks(ready: list[PartRange], free: int, width: int) -> list[list[PartRange]]:
    """Task runs for the `ready` parts (in order), given `free` upload slots. While
    they fit the slots (a live stream caught up, or nearly), one task run per part. A
    file far ahead goes up in batches of up to BATCH_PARTS consecutive parts, each
    using up to `width` slots: one task run's API calls then cover many parts."""
    if len(ready) <= free:
        return [[p] for p in ready]
    batches: list[list[PartRange]] = []
    for p in ready:
        last = batches[-1] if batches else None
        if last and len(last) < BATCH_PARTS and last[-1].number + 1 == p.number:
            last.append(p)
        else:
            batches.append([p])
    out: list[list[PartRange]] = []
    for batch in batches:
        if slots(batch, width) > free:
            break
        out.append(batch)
        free -= slots(batch, width)
    return out


def slots(batch: list[PartRange], width: int) -> int:
    """Upload slots (parts in memory at once) a task run of `batch` takes."""
    return min(len(batch), max(1, width))


@dataclass
class PartPlanner:
    """Walks the part plan: the parts that are done, in flight, and next. `reserved`
    parts belong to a window task that sends them once their bytes exist: not to be
    planned again, nor required of the file yet.

    The tail loop asks on every poll, for the whole of a recording that may run to
    thousands of parts: each answer costs what is in flight, not what is done (a walk
    from part 1 took 4 ms per poll at 1,500 parts). `done` only grows in place
    (`settle` replaces it), so the parts below the lowest one not done stay done."""

    plan: PartPlan | int
    done: set[int] = field(default_factory=set)
    in_flight: set[int] = field(default_factory=set)
    reserved: set[int] = field(default_factory=set)
    # The lowest part not done, and the `done` set (and its size) it was found in.
    _low: tuple[set[int] | None, int] = field(
        default=(None, 1), init=False, repr=False, compare=False
    )
    _top: tuple[set[int] | None, int, int] = field(
        default=(None, -1, 0), init=False, repr=False, compare=False
    )

    def ready(self, size: int, limit: int) -> list[PartRange]:
        """Up to `limit` full parts that lie within `size` bytes and are neither done
        nor in flight nor reserved, lowest numbers first."""
        out: list[PartRange] = []
        k = self._lowest_not_done()
        if limit <= 0 or k > MAX_PARTS:
            return out
        offset = part_offset(k, self.plan)
        while len(out) < limit and k <= MAX_PARTS:
            n = part_size(k, self.plan)
            if offset + n > size:
                break
            if k not in self.done and k not in self.in_flight and k not in self.reserved:
                out.append(PartRange(k, offset, n))
            offset += n
            k += 1
        return out

    def _lowest_not_done(self) -> int:
        seen, k = self._low
        if seen is not self.done:  # replaced (settle, or given): count again from 1
            k = 1
        while k in self.done:
            k += 1
        self._low = (self.done, k)
        return k

    def covered(self) -> int:
        """Bytes the done and in-flight parts require the file to still have."""
        top = max(self._top_done(), max(self.in_flight, default=0))
        return part_offset(top, self.plan) + part_size(top, self.plan) if top else 0

    def _top_done(self) -> int:
        seen, count, top = self._top
        if seen is not self.done or count != len(self.done):  # a part was added
            top = max(self.done, default=0)
            self._top = (self.done, len(self.done), top)
        return top

    def settle(self, parts: Mapping[int, PartRecord]) -> None:
        """Count as done exactly the full parts in `parts` (a short last part uploaded
        by finalize is uploaded again once the file has grown past it)."""
        self.done = {k for k, p in parts.items() if p.size == part_size(k, self.plan)}


class WriterState(StrEnum):
    """What the OS says about the file's writers (stream_ingest/flows/writers.py)."""

    WRITING = "writing"  # a process has it open for writing: still recording
    CLOSED = "closed"  # nobody has it open for writing
    UNKNOWN = "unknown"  # cannot be known here (network mount, no permission, no /proc)


def ask_writers(quiet: float, eager: bool, settle_seconds: float, known: bool) -> bool:
    """Whether the tail loop asks the OS about the file's writers at this poll. Only
    a quiet file can have ended; but while a writer is known (`known`: the last
    answer named one, or none was asked yet), asking costs a stat and a read of that
    writer's descriptor (stream_ingest/flows/writers.py WriterWatch.known), so an
    eager loop asks at every poll and sees the recorder's close at the poll that
    sees its last bytes, a poll sooner than the first quiet one."""
    if not eager:
        return quiet >= settle_seconds
    return quiet > 0 or known


def stream_ended(
    *,
    now: float,
    last_change: float,
    closed_hint: bool,
    writers: WriterState,
    settle_seconds: float,
    idle_timeout_seconds: float,
    empty: bool = False,
    eager: bool = False,
) -> bool:
    """A recording has ended when no process has the file open for writing and it has
    not changed for a short settle (a writer may reopen it to patch its head). A file
    still open for writing is still recording, however long it stalls (a low-rate
    muxer, a camera that reconnects). Only where the writers cannot be known does the
    old rule apply: the sensor saw it closed and it settled, or it has not changed for
    the idle timeout. An empty file nobody writes has most likely not started yet (a
    recorder that creates it first and opens it later): only the idle timeout ends it.

    `eager`: the caller waits out the settle itself while it verifies the file (the
    finalize task does), so a file nobody writes may end at once, at the very look
    that saw its last bytes: a writer that reopens it within the settle sends the
    stream back to tailing."""
    quiet = now - last_change
    if writers == WriterState.WRITING:
        return False
    if writers == WriterState.CLOSED:
        if empty:
            return quiet >= idle_timeout_seconds
        return eager or quiet >= settle_seconds
    return (closed_hint and quiet >= settle_seconds) or quiet >= idle_timeout_seconds
