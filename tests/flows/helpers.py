"""Helpers for flow tests: writers that grow a file the way a recorder does."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

MIB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes (a repeated random block would let
    a part-mixup bug go unnoticed)."""
    import random

    rnd = random.Random(seed)
    return rnd.randbytes(size)


class GrowingWriter(threading.Thread):
    """Appends `data` in `steps` chunks through one open handle, `pause` seconds apart,
    then optionally rewrites the first bytes (as MP4/MKV muxers do on close)."""

    def __init__(self, path: Path, data: bytes, steps: int, pause: float, head_patch: bytes = b""):
        super().__init__(name="writer", daemon=True)
        self.path, self.data, self.steps, self.pause = path, data, steps, pause
        self.head_patch = head_patch
        self.done = threading.Event()

    def run(self) -> None:
        chunk = -(-len(self.data) // self.steps)
        with open(self.path, "r+b" if self.path.exists() else "wb") as fh:
            for i in range(0, len(self.data), chunk):
                fh.write(self.data[i : i + chunk])
                fh.flush()
                os.fsync(fh.fileno())
                time.sleep(self.pause)
            if self.head_patch:
                fh.seek(0)
                fh.write(self.head_patch)
                fh.flush()
        self.done.set()


def object_bytes(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
