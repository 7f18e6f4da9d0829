"""Stream states and their legal transitions, as one pure function.

detected -> uploading -> finalizing -> completed; finalizing -> uploading when the
file changes during finalize; failed is resumable (the multipart upload is kept) and
aborted is terminal (nothing to keep: no part uploaded, every byte already in the
completed object, or an operator said so: the upload is aborted). Salvaged is terminal
too: the source can no longer be read, and the parts uploaded so far were kept as an
object of their own (stream_ingest/salvage.py). Completed is
final for its take but not for its file: completed -> uploading starts a revision
(the file grew or was patched later). Skipped is terminal: the key was taken by
another stream's object and the setting on_existing says skip.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    DETECTED = "detected"
    UPLOADING = "uploading"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    SKIPPED = "skipped"
    SALVAGED = "salvaged"


TERMINAL = frozenset({Status.COMPLETED, Status.ABORTED, Status.SKIPPED, Status.SALVAGED})
ACTIVE = frozenset({Status.DETECTED, Status.UPLOADING, Status.FINALIZING})

_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.DETECTED: frozenset({Status.UPLOADING, Status.FAILED, Status.ABORTED, Status.SKIPPED}),
    Status.UPLOADING: frozenset(
        {
            Status.UPLOADING,
            Status.FINALIZING,
            Status.FAILED,
            Status.ABORTED,
            Status.SKIPPED,
            Status.SALVAGED,
        }
    ),
    Status.FINALIZING: frozenset(
        {
            Status.UPLOADING,
            Status.FINALIZING,
            Status.COMPLETED,
            Status.FAILED,
            Status.ABORTED,
            Status.SKIPPED,
            Status.SALVAGED,
        }
    ),
    Status.FAILED: frozenset(
        {Status.UPLOADING, Status.FAILED, Status.ABORTED, Status.SKIPPED, Status.SALVAGED}
    ),
    Status.COMPLETED: frozenset({Status.UPLOADING}),  # a revision
    Status.ABORTED: frozenset(),
    Status.SKIPPED: frozenset(),
    Status.SALVAGED: frozenset(),
}


class IllegalTransition(ValueError):
    def __init__(self, current: Status, target: Status) -> None:
        super().__init__(f"illegal stream transition {current} -> {target}")
        self.current, self.target = current, target


def transition(current: Status | str, target: Status | str) -> Status:
    """Return `target` if the move from `current` is legal, else raise IllegalTransition."""
    cur, tgt = Status(current), Status(target)
    if tgt not in _ALLOWED[cur]:
        raise IllegalTransition(cur, tgt)
    return tgt
