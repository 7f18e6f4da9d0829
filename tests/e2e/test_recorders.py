"""Real recorders into the watched folder of the real stack (server, deployed flows,
the default warm worker, sensor): ffmpeg writing MKV at a low rate, MP4 rewritten for
faststart at close, a stream that stalls and resumes, the segment muxer, a symlink out
of the folder and a file name that is not UTF-8. Each object must be the file's bytes
(SHA-256) and, for video, readable by ffprobe.

The idle timeout is 2 s here, shorter than a low-rate Matroska cluster (5 s) and than
the stall: only the OS's answer "ffmpeg still has it open for writing" keeps those
streams going."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack, new_bucket, product_env, until

pytestmark = pytest.mark.e2e
FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
PATTERN = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=10", "-vf", "noise=alls=60:allf=t"]


class Recorders:
    def __init__(self, stack: Stack, s3: Any, bucket: str, workdir: Path) -> None:
        self.stack, self.s3, self.bucket, self.workdir = stack, s3, bucket, workdir

    def object(self, key: str, timeout: float = 120) -> bytes:
        return until(
            lambda: self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read(),
            timeout,
            f"s3://{self.bucket}/{key}",
        )

    def completed_object(self, path: Path, key: str, timeout: float = 240) -> bytes:
        """The object once its stream's run is Completed (not just any first version)."""
        until(
            lambda: (run := self.stack.run_for(path.name)) and run["state_type"] == "COMPLETED",
            timeout,
            f"the completed run of {path.name}",
        )
        return self.object(key)

    def probe(self, body: bytes, suffix: str) -> None:
        """ffprobe reads the object as a video with a duration."""
        copy = self.workdir / f"probe-{uuid.uuid4().hex[:6]}{suffix}"
        copy.write_bytes(body)
        out = subprocess.run(
            [FFPROBE, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", copy],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and float(out.stdout.strip()) > 0, out.stderr


def ffmpeg(*args: str | Path | bytes, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", *args],
        stderr=subprocess.PIPE,
        **kwargs,
    )


def finished(proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode(errors="replace")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def rec(tmp_path_factory, redis_server, moto_server) -> Iterator[Recorders]:
    assert FFMPEG and FFPROBE, "ffmpeg and ffprobe are needed (./test.sh installs them)"
    workdir = tmp_path_factory.mktemp("recorders")
    s3, bucket, namespace = new_bucket(moto_server.url, "rec")
    env = product_env(workdir, redis_server.url, moto_server.url, bucket, namespace)
    env["STREAM_INGEST_IDLE_TIMEOUT_SECONDS"] = "2"
    with Stack(env, workdir) as stack:
        yield Recorders(stack, s3, bucket, workdir)


def test_low_rate_matroska_outlives_an_idle_timeout_shorter_than_its_clusters(
    rec: Recorders,
) -> None:
    path = rec.stack.watch_dir / "low rate.mkv"
    proc = ffmpeg(
        "-re", *PATTERN, "-t", "14", "-c:v", "libx264", "-preset", "ultrafast",
        "-b:v", "60k", "-f", "matroska", path,
    )  # fmt: skip
    finished(proc)
    body = rec.completed_object(path, "e2e/low rate.mkv")
    assert sha256(body) == sha256(path.read_bytes())
    rec.probe(body, ".mkv")


def test_mp4_rewritten_for_faststart_at_close(rec: Recorders) -> None:
    path = rec.stack.watch_dir / "faststart.mp4"
    proc = ffmpeg(
        "-re", *PATTERN, "-t", "8", "-c:v", "libx264", "-preset", "ultrafast",
        "-b:v", "2M", "-movflags", "+faststart", path,
    )  # fmt: skip
    finished(proc)
    body = rec.completed_object(path, "e2e/faststart.mp4")
    assert sha256(body) == sha256(path.read_bytes())
    assert body[4:8] == b"ftyp" and body.find(b"moov") < body.find(b"mdat")  # moved first
    rec.probe(body, ".mp4")


def test_a_stream_that_stalls_and_resumes(rec: Recorders) -> None:
    """An RTSP-like source: ffmpeg copies what arrives on its input into the file and
    holds the file open while the source is silent for 6 s (three idle timeouts)."""
    source = rec.workdir / "source.ts"
    finished(ffmpeg(*PATTERN, "-t", "10", "-c:v", "libx264", "-preset", "ultrafast", source))
    data = source.read_bytes()
    path = rec.stack.watch_dir / "camera stall.ts"
    proc = ffmpeg("-f", "mpegts", "-i", "pipe:0", "-c", "copy", "-f", "mpegts", path,
                  stdin=subprocess.PIPE)  # fmt: skip
    assert proc.stdin is not None
    half = (len(data) // 2) // 188 * 188  # whole TS packets
    proc.stdin.write(data[:half])
    proc.stdin.flush()
    time.sleep(6)
    proc.stdin.write(data[half:])
    proc.stdin.close()
    proc.stdin = None  # closed: the end of the source (communicate must not flush it)
    finished(proc)
    body = rec.completed_object(path, "e2e/camera stall.ts")
    assert sha256(body) == sha256(path.read_bytes())
    assert len(body) > half  # the bytes after the stall arrived too
    rec.probe(body, ".ts")


def test_the_segment_muxer_gives_one_object_per_segment(rec: Recorders) -> None:
    folder = rec.stack.watch_dir / "segments"
    folder.mkdir()
    proc = ffmpeg(
        "-re", *PATTERN, "-t", "9", "-c:v", "libx264", "-preset", "ultrafast",
        "-g", "10", "-f", "segment", "-segment_time", "3", folder / "cam-%03d.ts",
    )  # fmt: skip
    finished(proc)
    segments = sorted(folder.glob("cam-*.ts"))
    assert len(segments) >= 3
    for segment in segments:
        body = rec.completed_object(segment, f"e2e/segments/{segment.name}")
        assert sha256(body) == sha256(segment.read_bytes()), segment.name
        rec.probe(body, ".ts")


def test_several_cameras_at_once_through_the_default_deployment(rec: Recorders) -> None:
    """Four ffmpeg recordings started together (MKV and MP4, takes told apart by
    length and metadata): every object is its file's bytes and a video, and the
    default worker (stream-ingest-warm) ran them all in its one process."""
    cams = [(f"studio-{i}.{ext}", ext, 6 + i) for i, ext in enumerate(["mkv", "mp4"] * 2)]
    procs = []
    for name, _ext, seconds in cams:
        args = ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "1M"]
        procs.append(ffmpeg("-re", *PATTERN, *args, "-metadata", f"title={name}",
                            rec.stack.watch_dir / name))  # fmt: skip
    for proc in procs:
        finished(proc)
    owners = set()
    for name, ext, _seconds in cams:
        path = rec.stack.watch_dir / name
        body = rec.completed_object(path, f"e2e/{name}")
        assert sha256(body) == sha256(path.read_bytes()), name
        rec.probe(body, f".{ext}")
        run = rec.stack.run_for(name)
        assert run is not None and run["state_type"] == "COMPLETED"
        owners.add(run["infrastructure_pid"])
    assert len(owners) == 1 and next(iter(owners)).startswith("warm:"), owners


def test_a_symlink_out_of_the_folder_is_never_uploaded(rec: Recorders) -> None:
    secret = rec.workdir / "private" / "secret.mp4"
    secret.parent.mkdir()
    secret.write_bytes(b"private recording")
    (rec.stack.watch_dir / "secret.mp4").symlink_to(secret)
    marker = rec.stack.watch_dir / "after-the-link.mp4"
    marker.write_bytes(b"a file the sensor sees after the link")
    rec.completed_object(marker, "e2e/after-the-link.mp4")
    keys = [o["Key"] for o in rec.s3.list_objects_v2(Bucket=rec.bucket).get("Contents", [])]
    assert "e2e/secret.mp4" not in keys
    assert rec.stack.run_for("secret.mp4") is None  # not even a run


def test_a_file_name_that_is_not_utf8(rec: Recorders) -> None:
    folder = os.fsencode(rec.stack.watch_dir)
    raw = folder + b"/cam\xe9 take.ts"
    finished(ffmpeg(*PATTERN, "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", raw))
    body = rec.object("e2e/cam%E9 take.ts")
    assert sha256(body) == sha256(Path(os.fsdecode(raw)).read_bytes())
    rec.probe(body, ".ts")


def test_ffmpeg_y_over_a_completed_take_keeps_both_takes(rec: Recorders) -> None:
    """`ffmpeg -y` truncates the completed file and records a second take into the same
    inode: the sensor sees the open, the new take becomes its own stream and object
    (`take (2).mp4`), and the first take's object is untouched."""
    path = rec.stack.watch_dir / "take.mp4"
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "1M"]
    finished(ffmpeg("-re", *PATTERN, "-t", "4", *encode, "-metadata", "title=take 1", path))
    take1 = path.read_bytes()
    assert sha256(rec.completed_object(path, "e2e/take.mp4")) == sha256(take1)

    finished(ffmpeg("-y", "-re", *PATTERN, "-t", "3", *encode, "-metadata", "title=take 2", path))
    take2 = path.read_bytes()
    assert take2 != take1

    def second_take() -> bytes | None:
        body = rec.object("e2e/take (2).mp4", timeout=240)
        return body if sha256(body) == sha256(take2) else None

    body = until(second_take, 240, "the second take's object")
    rec.probe(body, ".mp4")
    assert sha256(rec.object("e2e/take.mp4")) == sha256(take1)


def test_a_completed_recording_patched_and_extended_later_gets_a_revision(
    rec: Recorders,
) -> None:
    """A tool rewrites the head of a finished recording in place and appends to it: the
    sensor sees the close after writing, a revision run of the same stream replaces
    the object, and `revision` in the run's result is 2."""
    path = rec.stack.watch_dir / "patched later.mkv"
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M"]
    finished(ffmpeg(*PATTERN, "-t", "8", *encode, "-f", "matroska", path))
    first = rec.completed_object(path, "e2e/patched later.mkv")
    assert sha256(first) == sha256(path.read_bytes())
    first_run = rec.stack.run_for(path.name)
    assert first_run is not None
    stream_tag = next(t for t in first_run["tags"] if t.startswith("stream:"))
    runs_before = {r["id"] for r in rec.stack.flow_runs()}

    with open(path, "r+b") as fh:
        fh.seek(64)
        fh.write(b"PATCHED")  # in place: same inode, same take
        fh.seek(0, os.SEEK_END)
        fh.write(b"\0" * 4096)
    final = path.read_bytes()

    def revised() -> bytes | None:
        body = rec.object("e2e/patched later.mkv")
        return body if sha256(body) == sha256(final) else None

    until(revised, 240, "the revised object")
    new_runs = [r for r in rec.stack.flow_runs() if r["id"] not in runs_before]
    assert new_runs and all(
        "revision" in r["tags"] and stream_tag in r["tags"] for r in new_runs
    )  # the same stream, never a new take
    for run in new_runs:
        rec.stack.wait_for_state(run["id"], "COMPLETED", timeout=240)
    assert sha256(rec.object("e2e/patched later.mkv")) == sha256(final)
