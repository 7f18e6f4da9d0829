"""Which new streams share a flow run: pure decisions, no I/O.

A flow run costs the Prefect server far more than the upload of a small file (about
0.15-0.2 CPU-s per run on SQLite), so files that were finished when the sensor saw
them (renamed into the folder, or created and closed within one burst of events) go
up together: one run for up to `batch_max` of them, a row each in its table artifact. Everything else,
and any file that turns out not to be finished when its batch looks at it, keeps a
run of its own: a live recording never waits for a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream_ingest.sensors.events import Cause

# Causes that say the file was written before the sensor saw it: renamed in, or found
# by a scan (written while the sensor was down, or missed by inotify).
FINISHED_CAUSES: frozenset[str] = frozenset({"moved", "scan"})


@dataclass
class Waiting:
    """A claimed stream whose run is not yet requested."""

    path: str
    stream_id: str
    identity: str
    cause: Cause
    # A close after writing was seen for this incarnation, or the OS said that no
    # process has it open for writing (a file moved in from outside the folder comes
    # as created, with no close to follow).
    closed: bool = False
    # The close was an event (not the OS's answer): its `closed` event is sent with
    # the stream's run request, in the batch's one event if it is batched.
    close_heard: bool = False

    @property
    def finished(self) -> bool:
        """Written before it was seen, or closed since: worth a batch's look."""
        return self.closed or self.cause in FINISHED_CAUSES


def plan_runs(
    waiting: list[Waiting], sizes: dict[str, int], small_bytes: int, batch_max: int
) -> tuple[list[Waiting], list[list[Waiting]]]:
    """Split `waiting` into streams that get a run of their own and batches.

    `sizes` holds each stream's file size now (absent: gone or unreadable, left to its
    own run, which says what became of it). A stream is batched if its file is finished,
    not empty and at most `small_bytes` (one part). Fewer than two such streams, or a
    `batch_max` under 2, make no batch: a lone file gets its own run, as before."""
    small = [
        w
        for w in waiting
        if w.finished and 0 < sizes.get(w.stream_id, 0) <= small_bytes and batch_max >= 2
    ]
    if len(small) < 2:
        return list(waiting), []
    chosen = {w.stream_id for w in small}
    singles = [w for w in waiting if w.stream_id not in chosen]
    batches = [small[i : i + batch_max] for i in range(0, len(small), batch_max)]
    if len(batches[-1]) == 1:  # a batch of one is a run of its own
        singles.append(batches.pop()[0])
    return singles, batches


def any_batchable(waiting: list[Waiting]) -> bool:
    """Whether waiting a moment for more events could make a batch: only a stream
    that may be finished (a created one may have been moved in, or written and closed
    before its events are handled), never one left waiting by an `opened` or a new take."""
    return any(w.finished or w.cause == "created" for w in waiting)
