"""ffprobe's answers as media facts: real answers for files ffmpeg made (lavfi testsrc2
and sine, 320x240 at 25 fps for 2 s: `ffprobe -v error -print_format json
-show_format -show_streams`), kept in tests/unit/ffprobe/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_ingest.media import MediaFacts, MediaReport, ffprobe_reason, frame_rate, parse_ffprobe

ANSWERS = Path(__file__).parent / "ffprobe"


def _answer(name: str) -> str:
    return (ANSWERS / f"{name}.json").read_text()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "clip.mp4",
            MediaFacts("mov,mp4,m4a,3gp,3g2,mj2", 2.0, "h264", 320, 240, 25.0, 352700, "aac"),
        ),
        # Matroska's streams carry no duration or bitrate: the container's count.
        ("clip.mkv", MediaFacts("matroska,webm", 2.008, "h264", 320, 240, 25.0, 346784, "opus")),
        ("clip.ts", MediaFacts("mpegts", 2.011433, "mpeg2video", 320, 240, 25.0, 950359, "mp2")),
    ],
)
def test_real_answers_give_the_file_s_facts(name: str, expected: MediaFacts) -> None:
    assert parse_ffprobe(_answer(name)) == expected


def test_cover_art_is_not_the_video_and_a_missing_average_rate_falls_back() -> None:
    answer = json.loads(_answer("clip.mp4"))
    video = answer["streams"][0]
    cover = {**video, "codec_name": "mjpeg", "disposition": {"attached_pic": 1}}
    video["avg_frame_rate"], video["r_frame_rate"] = "0/0", "30000/1001"
    answer["streams"] = [cover, *answer["streams"]]

    facts = parse_ffprobe(json.dumps(answer))

    assert (facts.video_codec, facts.frame_rate) == ("h264", 29.97)


def test_a_stream_s_duration_stands_in_for_the_container_s() -> None:
    answer = json.loads(_answer("clip.ts"))
    del answer["format"]["duration"], answer["format"]["bit_rate"]
    facts = parse_ffprobe(json.dumps(answer))
    assert (facts.duration_s, facts.bitrate) == (2.011433, None)


@pytest.mark.parametrize("text", ["", "{}", "[]", '{"format": {}}', "not json"])
def test_an_answer_that_describes_nothing_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ffprobe"):
        parse_ffprobe(text)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("25/1", 25.0),
        ("30000/1001", 29.97),
        ("0/0", None),
        ("0/1", None),
        ("", None),
        (None, None),
        ("x/1", None),
    ],
)
def test_frame_rates(text: object, rate: float | None) -> None:
    assert frame_rate(text) == rate


def test_ffprobe_s_complaint_is_one_line_without_its_noise() -> None:
    # ffprobe 5.1's stderr for 20,000 random bytes named junk.mp4.
    stderr = (
        "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5628f4a691c0] moov atom not found\n"
        "file:/w/junk.mp4: Invalid data found when processing input\n"
    )
    assert (
        ffprobe_reason(stderr, "/w/junk.mp4")
        == "moov atom not found; Invalid data found when processing input"
    )
    assert ffprobe_reason("") == "ffprobe failed without a message"
    assert len(ffprobe_reason("x" * 1000)) == 200


def test_a_report_round_trips_and_summarises() -> None:
    facts = parse_ffprobe(_answer("clip.mp4"))
    report = MediaReport(1, 88175, facts)
    assert MediaReport.from_json(report.to_json()) == report
    assert report.summary() == "mov,mp4,m4a,3gp,3g2,mj2, 2.00 s, h264 320x240 25 fps, aac, 353 kb/s"
    unreadable = MediaReport(2, 20000, unreadable="moov atom not found")
    assert MediaReport.from_json(unreadable.to_json()) == unreadable
    assert json.loads(unreadable.to_json()) == {
        "revision": 2,
        "size": 20000,
        "unreadable": "moov atom not found",
    }
    assert unreadable.summary() == "unreadable: moov atom not found"
    changed = MediaReport(1, 5, not_probed="the file changed after completion")
    assert MediaReport.from_json(changed.to_json()) == changed
    assert MediaReport.from_json("") is None
