"""Pure decisions of retention: which index entries point at streams that are gone,
and what `streams prune` does with a stream that ended. No I/O: the checkpoint store
(stream_ingest/blocks/store_retention.py) gathers the facts and acts on what these functions return.

A stream that ends (completed, aborted, skipped) keeps its keys for the retention,
then Redis expires them. Sets and hashes cannot expire one member at a time, so the
indexes (every stream, the active ones, the identity index, the uploads registry)
still name the stream: those entries are dangling once its record is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from stream_ingest.janitor_plan import Action
from stream_ingest.records import StreamRecord
from stream_ingest.states import TERMINAL

ALL = "streams:all"
ACTIVE = "streams:active"
BY_IDENTITY = "streams:by-identity"
UPLOADS = "uploads"


@dataclass(frozen=True)
class Indexes:
    """What the indexes hold: ids of every stream and of the active ones, identity ->
    stream id, and upload id -> the registry's entry ({stream_id, key, created})."""

    all_ids: frozenset[str]
    active_ids: frozenset[str]
    identities: Mapping[str, str]
    uploads: Mapping[str, Mapping[str, Any]]

    def stream_ids(self) -> set[str]:
        """Every stream id an entry names."""
        named = set(self.all_ids) | set(self.active_ids) | set(self.identities.values())
        named |= {str(u.get("stream_id", "")) for u in self.uploads.values()}
        return named - {""}


@dataclass(frozen=True)
class IndexEntry:
    """One entry of an index that names a stream whose record is gone."""

    index: str  # ALL, ACTIVE, BY_IDENTITY or UPLOADS
    member: str  # the stream id, the identity or the upload id
    stream_id: str

    def describe(self) -> str:
        if self.member == self.stream_id:
            return f"{self.index} {self.member}"
        return f"{self.index} {self.member} -> {self.stream_id}"


def dangling(
    indexes: Indexes, alive: set[str], now: float, retention_seconds: float
) -> list[IndexEntry]:
    """The entries that name a stream not in `alive` (its record is gone). An upload's
    entry goes only once it is older than the retention: until then the janitor may
    still need it to abort the upload ("no stream record"), and an upload of a stream
    that expired is always that old (it was created before the stream ended)."""
    found = [IndexEntry(ALL, sid, sid) for sid in sorted(indexes.all_ids - alive)]
    found += [IndexEntry(ACTIVE, sid, sid) for sid in sorted(indexes.active_ids - alive)]
    found += [
        IndexEntry(BY_IDENTITY, identity, sid)
        for identity, sid in sorted(indexes.identities.items())
        if sid not in alive
    ]
    for upload_id, entry in sorted(indexes.uploads.items()):
        sid = str(entry.get("stream_id", ""))
        if sid not in alive and now - float(entry.get("created", 0)) >= retention_seconds:
            found.append(IndexEntry(UPLOADS, upload_id, sid))
    return found


@dataclass(frozen=True)
class Retirement:
    """What `streams prune` does with a stream that ended: delete it now (older than
    the retention) or give it the expiry it lacks (written before expiries existed)."""

    action: Literal["delete", "expire"]
    stream_id: str
    status: str
    age_seconds: float
    ttl_seconds: float = 0.0  # for "expire": what is left of the retention

    def describe(self) -> str:
        age = f"{self.status} {span(self.age_seconds)} ago"
        if self.action == "delete":
            return f"delete stream {self.stream_id} ({age})"
        return f"expire stream {self.stream_id} in {span(self.ttl_seconds)} ({age})"


def plan_retirements(
    records: Iterable[StreamRecord],
    expiring: set[str],
    now: float,
    retention_seconds: float,
) -> list[Retirement]:
    """Pure: the streams that ended more than the retention ago are deleted; those that
    ended since and have no expiry (`expiring` are the ids whose keys have one) get
    what is left of it. Live and failed streams are never touched."""
    plan = []
    for rec in records:
        if rec.status not in TERMINAL:
            continue
        age = max(0.0, now - ended_at(rec))
        if age >= retention_seconds:
            plan.append(Retirement("delete", rec.stream_id, str(rec.status), age))
        elif rec.stream_id not in expiring:
            left = retention_seconds - age
            plan.append(Retirement("expire", rec.stream_id, str(rec.status), age, left))
    return plan


def ended_at(record: StreamRecord) -> float:
    """When the stream ended, as an epoch: the latest of its stamps (its last status
    change, its completion, else its start: a record put whole, e.g. rebuilt from a
    run's copy, may carry an older last activity than its completion)."""
    epochs = [0.0]
    for stamp in (record.last_activity_at_utc, record.completed_at_utc, record.started_at_utc):
        try:
            epochs.append(datetime.fromisoformat(stamp).timestamp())
        except ValueError:  # empty, or not a timestamp
            continue
    return max(epochs)


def sweep_report(entries: Sequence[IndexEntry]) -> list[Action]:
    """The janitor's report row for the entries its index sweep dropped (none: no row)."""
    if not entries:
        return []
    streams = len({e.stream_id for e in entries})
    reason = f"index entries of {streams} streams past the retention"
    return [Action("drop-index-entries", "", f"{len(entries)} entries", reason)]


def span(seconds: float) -> str:
    """A duration for people: "45.0 days", "3.5 h", "12 s"."""
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"
