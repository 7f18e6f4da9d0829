"""What `streams list|show|watch` print of each stream's lag (stream_ingest/lag.py):
rows, the watch's table and its `--json` snapshot. Pure: records and a time in,
values out; stream_ingest/cli/watch.py draws them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from rich.table import Table
from rich.text import Text

from stream_ingest.lag import STALE_AFTER_SECONDS, human_bytes, lag_of, parse_utc, utc_text
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status

# States of the watch's STATE column beyond the statuses.
LAGGING, SILENT = "lagging", "silent"


def with_lag(record: StreamRecord, now: float) -> dict[str, object]:
    """`streams list|show --json`'s object: the record and its lag at `now`."""
    lag = lag_of(record, now)
    return {**record.public(), "lag_bytes": lag.bytes, "lag_seconds": round(lag.seconds, 1)}


@dataclass(frozen=True)
class WatchRow:
    """One active stream as the watch shows it (and `--json` prints it)."""

    stream_id: str
    host: str
    path: str
    status: str
    state: str  # the status, or `lagging`, or `silent` (no figures written lately)
    rate_bps: int
    parts: int
    bytes_uploaded: int
    observed_bytes: int
    lag_bytes: int
    lag_seconds: float
    observed_at_utc: str


def state_of(record: StreamRecord, lag_seconds: float, now: float, threshold: float) -> str:
    """`silent` when the run that uploads it has written no figures for
    STALE_AFTER_SECONDS (its host or run may be gone), else `lagging` past the
    threshold, else the status."""
    if record.status == Status.DETECTED:
        return str(record.status)
    seen = parse_utc(record.observed_at_utc)
    if seen is not None and now - seen > STALE_AFTER_SECONDS:
        return SILENT
    if lag_seconds > threshold:
        return LAGGING
    return str(record.status)


def rows_of(records: Iterable[StreamRecord], now: float, threshold: float) -> list[WatchRow]:
    """The rows of `records` at `now`, by host then path: a row keeps its place
    from one refresh to the next."""
    rows = []
    for r in records:
        lag = lag_of(r, now)
        rows.append(
            WatchRow(
                stream_id=r.stream_id,
                host=r.host,
                path=r.original_path,
                status=str(r.status),
                state=state_of(r, lag.seconds, now, threshold),
                rate_bps=r.upload_rate_bps,
                parts=r.parts_count,
                bytes_uploaded=r.bytes_uploaded,
                observed_bytes=r.observed_bytes,
                lag_bytes=lag.bytes,
                lag_seconds=round(lag.seconds, 1),
                observed_at_utc=r.observed_at_utc,
            )
        )
    return sorted(rows, key=lambda row: (row.host, row.path, row.stream_id))


def snapshot(rows: list[WatchRow], now: float) -> dict[str, object]:
    """`streams watch --json`: the time and every row."""
    return {"at_utc": utc_text(now), "streams": [asdict(r) for r in rows]}


_STYLES = {LAGGING: "bold red", SILENT: "yellow", "finalizing": "cyan", "detected": "dim"}
COLUMNS = ("HOST", "STREAM", "FILE", "STATE", "RATE", "PARTS", "UPLOADED", "LAG", "LAG S")


def table(rows: list[WatchRow], now: float, threshold: float, note: str = "") -> Table:
    """The watch's table at `now`: one row per active stream, the worst lag in the
    title. `note` is said under it (an error reading Redis, how to quit)."""
    worst = max((r.lag_seconds for r in rows), default=0.0)
    hosts = len({r.host for r in rows if r.host})
    title = (
        f"{len(rows)} active stream{'s' * (len(rows) != 1)} on {hosts} "
        f"host{'s' * (hosts != 1)}, worst lag {worst:.0f} s "
        f"(alert at {threshold:g} s), {utc_text(now)[11:19]} UTC"
    )
    out = Table(*COLUMNS, title=title, caption=note or None, box=None, pad_edge=False)
    for column in out.columns[4:]:
        column.justify = "right"
    for r in rows:
        out.add_row(
            r.host or "-",
            r.stream_id[:8],
            r.path.rsplit("/", 1)[-1],
            Text(r.state, style=_STYLES.get(r.state, "green")),
            f"{human_bytes(r.rate_bps)}/s",
            str(r.parts),
            human_bytes(r.bytes_uploaded),
            human_bytes(r.lag_bytes),
            Text(f"{r.lag_seconds:.1f}", style="bold red" if r.lag_seconds > threshold else ""),
        )
    if not rows:
        out.add_row("-", "", "no active streams", "", "", "", "", "", "")
    return out
