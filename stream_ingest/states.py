"""Stream states and their legal transitions, as one pure function.

detected -> uploading -> finalizing -> completed; finalizing -> uploading when the
file changes during finalize; failed is resumable (the multipart upload is kept) and
aborted is terminal (source deleted or truncated: the upload is aborted).
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


TERMINAL = frozenset({Status.COMPLETED, Status.ABORTED})
ACTIVE = frozenset({Status.DETECTED, Status.UPLOADING, Status.FINALIZING})

_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.DETECTED: frozenset({Status.UPLOADING, Status.FAILED, Status.ABORTED}),
    Status.UPLOADING: frozenset(
        {Status.UPLOADING, Status.FINALIZING, Status.FAILED, Status.ABORTED}
    ),
    Status.FINALIZING: frozenset(
        {Status.UPLOADING, Status.FINALIZING, Status.COMPLETED, Status.FAILED, Status.ABORTED}
    ),
    Status.FAILED: frozenset({Status.UPLOADING, Status.FAILED, Status.ABORTED}),
    Status.COMPLETED: frozenset(),
    Status.ABORTED: frozenset(),
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
