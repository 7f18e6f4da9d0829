"""When a stream's progress bar is worth an update: each update is an API call and an
event, paid per stream, so the rule bounds both their rate and their cost per part."""

from __future__ import annotations

# A 5 MB/s camera (8 MiB parts) fills a part every 1.7 s: every 3 s was 1.1 calls per
# part, every 10 s 0.34. On a loaded host a stream sends fewer parts per 10 s, and the
# time limit alone let the bar cost up to 0.6 calls per part at 50 streams: at least
# PROGRESS_MIN_PARTS parts more keep it at or under 2 / PROGRESS_MIN_PARTS.
PROGRESS_EVERY_SECONDS = 10.0
PROGRESS_MIN_PARTS = 4


def progress_due(
    now: float, last_at: float | None, uploaded: int, last_uploaded: int, part_bytes: int
) -> bool:
    """True if the bar should move now: the first update, or at least
    PROGRESS_EVERY_SECONDS and PROGRESS_MIN_PARTS parts' bytes since the last one."""
    if last_at is None:
        return True
    return (
        now - last_at >= PROGRESS_EVERY_SECONDS
        and uploaded - last_uploaded >= PROGRESS_MIN_PARTS * part_bytes
    )
