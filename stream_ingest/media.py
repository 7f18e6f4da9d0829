"""What a recording is, as ffprobe tells it: container, duration, codecs, resolution,
frame rate and bitrate, read from `ffprobe -print_format json -show_format
-show_streams`. Pure: the flow runs ffprobe (stream_ingest/flows/media.py).

A `MediaReport` is what one revision's probe came to: the facts, or why there are
none (`unreadable`: ffprobe's own reason; `not_probed`: the file changed or ffprobe
did not answer in time). It is kept as compact JSON in the stream's record and, with
what names the object, in the manifest object beside it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

# `[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d5...] ` before a demuxer's message: noise in a reason.
_CONTEXT = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\]\s*")
MAX_REASON = 200  # a reason is one line of a table, not ffprobe's whole log
MANIFEST_SUFFIX = ".media.json"


def manifest_key(key: str) -> str:
    """The key of the manifest beside the recording at `key`."""
    return key + MANIFEST_SUFFIX


@dataclass(frozen=True)
class MediaFacts:
    container: str = ""  # ffprobe's format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration_s: float | None = None
    video_codec: str = ""
    width: int = 0
    height: int = 0
    frame_rate: float | None = None  # frames per second
    bitrate: int | None = None  # bits per second, of the whole file
    audio_codec: str = ""

    def summary(self) -> str:
        """One line, e.g. `mov,mp4,m4a,3gp,3g2,mj2, 2.00 s, h264 320x240 25 fps, aac,
        353 kb/s`."""
        video = " ".join(
            x
            for x in (
                self.video_codec,
                f"{self.width}x{self.height}" if self.width and self.height else "",
                f"{self.frame_rate:g} fps" if self.frame_rate else "",
            )
            if x
        )
        return ", ".join(
            x
            for x in (
                self.container,
                f"{self.duration_s:.2f} s" if self.duration_s is not None else "",
                video,
                self.audio_codec,
                f"{round(self.bitrate / 1000)} kb/s" if self.bitrate else "",
            )
            if x
        )


def parse_ffprobe(text: str | bytes) -> MediaFacts:
    """The facts in ffprobe's JSON answer. The first video stream that is not cover
    art and the first audio stream count; the container's duration and bitrate are
    the file's (a stream's duration where the container has none: Matroska's streams
    often have none, MPEG-TS's can differ).

    Raises:
        ValueError: the text is not ffprobe's JSON (nothing in it describes a file).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"ffprobe's answer is not JSON ({exc.msg})") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    streams = data.get("streams") if isinstance(data, dict) else None
    if not isinstance(fmt, dict) or not isinstance(streams, list):
        raise ValueError("ffprobe's answer names no format and no streams")
    streams = [s for s in streams if isinstance(s, dict)]
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video"
            and not (s.get("disposition") or {}).get("attached_pic")
        ),
        {},
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), {})
    durations = [d for d in (_number(s.get("duration")) for s in streams) if d is not None]
    duration = _number(fmt.get("duration"))
    bitrate = _number(fmt.get("bit_rate"))
    return MediaFacts(
        container=str(fmt.get("format_name") or ""),
        duration_s=duration if duration is not None else max(durations, default=None),
        video_codec=str(video.get("codec_name") or ""),
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        # The average rate is the stream's as played; r_frame_rate is the timebase's
        # guess, the fallback where the average is unknown ("0/0").
        frame_rate=frame_rate(video.get("avg_frame_rate")) or frame_rate(video.get("r_frame_rate")),
        bitrate=int(bitrate) if bitrate is not None else None,
        audio_codec=str(audio.get("codec_name") or ""),
    )


def frame_rate(text: object) -> float | None:
    """ffprobe's rational rate ("25/1", "30000/1001") as a number, None if unknown
    ("0/0", missing)."""
    if not isinstance(text, str):
        return None
    num, _, den = text.partition("/")
    try:
        value = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return round(value, 3) if value > 0 else None


def ffprobe_reason(stderr: str, path: str = "") -> str:
    """ffprobe's complaint in one line: its distinct messages without the demuxer's
    `[name @ 0x...]` or the file's path before them, e.g. `moov atom not found;
    Invalid data found when processing input`."""
    out: list[str] = []
    for line in stderr.splitlines():
        line = _CONTEXT.sub("", line.strip())
        for prefix in (f"file:{path}: ", f"{path}: "):
            if path and line.startswith(prefix):
                line = line[len(prefix) :]
        if line and line not in out:
            out.append(line)
    reason = "; ".join(out) or "ffprobe failed without a message"
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class MediaReport:
    """One revision's probe: the facts, or why there are none."""

    revision: int
    size: int  # the bytes probed: the completed object's
    facts: MediaFacts | None = None
    unreadable: str = ""  # ffprobe could not read it: its reason
    not_probed: str = ""  # the probe did not come to an answer: why

    def as_dict(self) -> dict[str, Any]:
        """Flat: revision and size, then the facts or the reason."""
        out: dict[str, Any] = {"revision": self.revision, "size": self.size}
        if self.facts is not None:
            return out | asdict(self.facts)
        return (
            out
            | ({"unreadable": self.unreadable} if self.unreadable else {})
            | ({"not_probed": self.not_probed} if self.not_probed else {})
        )

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> MediaReport | None:
        """The report kept as `to_json` made it; None for "" (never probed)."""
        if not text:
            return None
        data = json.loads(text)
        names = {f.name for f in fields(MediaFacts)}
        found = {k: v for k, v in data.items() if k in names}
        return cls(
            int(data.get("revision", 0)),
            int(data.get("size", 0)),
            MediaFacts(**found) if found else None,
            str(data.get("unreadable", "")),
            str(data.get("not_probed", "")),
        )

    def summary(self) -> str:
        if self.facts is not None:
            return self.facts.summary()
        if self.unreadable:
            return f"unreadable: {self.unreadable}"
        return f"not probed: {self.not_probed}"
