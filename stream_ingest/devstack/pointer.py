"""The dev stack's pointer: a `prefect.toml` that `dev` writes into the folder it was
started from and removes when it stops. Prefect reads `prefect.toml` from the current
folder (below environment variables), so `stream-ingest ...` and `prefect ...` run in
that folder reach the running stack's API with nothing to export; the IngestConfig
block there names the stack's Redis and S3.

A pointer left by a `dev` that was killed is replaced; a `prefect.toml` that `dev` did
not write is never touched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stream_ingest.errors import ConfigurationError

MARKER = "# written by `stream-ingest dev`"
SECOND_SHELL = "source .venv/bin/activate; stream-ingest streams list"
_PID = re.compile(rf"^{re.escape(MARKER)} \(pid (\d+)\)", re.M)


class StackPointer:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "prefect.toml"
        self.written = False

    def _owner(self) -> int | None:
        """The pid of the dev that wrote the pointer, or None if it is not ours."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        found = _PID.search(text)
        return int(found.group(1)) if found else None

    def check_free(self) -> None:
        """Raise if another running dev owns the pointer, or the file is not ours."""
        if not self.path.exists():
            return
        pid = self._owner()
        if pid is None:
            raise ConfigurationError(
                f"{self.path} exists and was not written by stream-ingest dev: "
                "start dev from another folder, or move that file"
            )
        if pid != os.getpid() and _alive(pid):
            raise ConfigurationError(f"stream-ingest dev is already running here (pid {pid})")

    def write(self, api_url: str) -> None:
        self.check_free()
        self.path.write_text(
            f"{MARKER} (pid {os.getpid()}); removed when it stops.\n"
            "# Prefect reads this file in this folder: the CLI finds the dev stack.\n"
            f'[api]\nurl = "{api_url}"\n'
        )
        self.written = True

    def remove(self) -> None:
        if self.written and self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
        self.written = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
