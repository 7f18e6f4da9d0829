"""S3 key naming: no escape from the prefix, no empty segments, no control characters."""

from __future__ import annotations

import os
import unicodedata
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_ingest.errors import KeyTooLong
from stream_ingest.keys import (
    MAX_KEY_BYTES,
    numbered,
    object_key,
    relative_posix,
    validate_template,
)

WATCH = PurePosixPath("/w")
STARTED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

segments = st.one_of(
    st.sampled_from(["..", ".", "", " ", "a b", "ü", "...", ". .", "e\u0301", "\x00x", "\x85"]),
    st.text(alphabet=st.characters(blacklist_characters="/"), max_size=12),
)
templates = st.sampled_from(
    [
        "{prefix}/{relpath}",
        "{prefix}/{date}/{name}",
        "{prefix}//{stem}.{ext}",
        "../{prefix}/../{relpath}",
        "{prefix}/{stream_id}/{name}",
    ]
)


def key(path: str, template: str = "{prefix}/{relpath}", prefix: str = "rec", **kw: object) -> str:
    return object_key(
        template,
        prefix=prefix,
        path=PurePosixPath(path),
        watch_dir=kw.pop("watch_dir", WATCH),  # type: ignore[arg-type]
        stream_id=str(kw.pop("stream_id", "sid")),
        started=STARTED,
    )


def _is_control(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cs") or c in "\ufffe\uffff"


@given(parts=st.lists(segments, min_size=1, max_size=6), template=templates, inside=st.booleans())
def test_keys_never_climb_out_or_carry_control_characters(
    parts: list[str], template: str, inside: bool
) -> None:
    base = "/w/" if inside else "/elsewhere/"
    k = key(base + "/".join(parts), template)
    assert k and not k.startswith("/") and not k.endswith("/")
    assert "//" not in k
    assert all(seg not in ("", ".", "..") for seg in k.split("/"))
    assert not any(_is_control(c) for c in k), repr(k)
    assert len(k.encode("utf-8")) <= MAX_KEY_BYTES
    assert k.startswith("rec/")


@given(parts=st.lists(segments, min_size=1, max_size=6))
def test_relpath_keeps_the_file_name_segments(parts: list[str]) -> None:
    path = PurePosixPath("/w/" + "/".join(parts))
    kept = [p for p in path.relative_to(WATCH).parts if p not in ("", ".", "..")]
    assert relative_posix(path, WATCH) == ("/".join(kept) or "unnamed")


def test_default_template() -> None:
    assert key("/w/sub/a b.mp4") == "rec/sub/a b.mp4"
    assert key("/w/a.mp4") == "rec/a.mp4"


def test_files_outside_the_watch_dir_map_to_their_bare_name() -> None:
    assert key("/elsewhere/deep/a b.mp4") == "rec/a b.mp4"
    assert key("relative/x.mkv") == "rec/x.mkv"


def test_dot_dot_in_a_path_or_template_cannot_escape_the_prefix() -> None:
    assert key("/w/../etc/passwd.mp4") == "rec/etc/passwd.mp4"
    assert key("/w/a/../../b.mp4") == "rec/a/b.mp4"
    assert key("/w/a.mp4", "{prefix}/../../{relpath}") == "rec/a.mp4"
    assert key("/w/..") == "rec/unnamed"


def test_names_with_dots_are_kept() -> None:
    assert key("/w/take..final.mp4") == "rec/take..final.mp4"
    assert key("/w/.hidden") == "rec/.hidden"


def test_empty_prefix_writes_to_the_bucket_root() -> None:
    assert key("/w/sub/a.mp4", prefix="") == "sub/a.mp4"
    assert key("/w/a.mp4", prefix="/a//b/") == "a/b/a.mp4"


def test_nfc_and_nfd_names_are_two_keys() -> None:
    """Two files a filesystem keeps apart (Linux compares bytes) stay apart in S3."""
    decomposed = "/w/cafe\u0301.mp4"
    composed = unicodedata.normalize("NFC", decomposed)
    assert key(decomposed) == "rec/cafe\u0301.mp4"
    assert key(composed) == "rec/caf\u00e9.mp4"


def test_percent_is_escaped_so_escapes_cannot_collide() -> None:
    assert key("/w/100%.mp4") == "rec/100%25.mp4"
    assert key(os.fsdecode(b"/w/%E9.mp4")) != key(os.fsdecode(b"/w/\xe9.mp4"))


names = st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)


@given(a=names, b=names)
def test_two_file_names_never_share_a_key(a: bytes, b: bytes) -> None:
    """Whatever bytes Linux allows in a name (all but "/" and NUL)."""
    ka, kb = key(os.fsdecode(b"/w/" + a)), key(os.fsdecode(b"/w/" + b))
    assert (ka == kb) == (a == b)
    ka.encode("utf-8")  # always valid UTF-8


def test_a_key_over_1024_bytes_is_a_clear_error() -> None:
    with pytest.raises(KeyTooLong, match="1024"):
        key("/w/" + "a" * 1100 + ".mp4")


def test_control_characters_are_percent_encoded() -> None:
    assert key("/w/a\x01b\x7f.mp4") == "rec/a%01b%7F.mp4"
    assert key("/w/tab\there.mp4") == "rec/tab%09here.mp4"
    assert key("/w/c1\x85.mp4") == "rec/c1%C2%85.mp4"  # NEL, a C1 control: its UTF-8 bytes


def test_undecodable_file_names_keep_their_bytes() -> None:
    # Linux hands Python a name that is not UTF-8 with surrogate escapes; the key
    # must still be valid UTF-8 and say which byte it was.
    path = os.fsdecode(b"/w/caf\xe9.mp4")
    assert key(path) == "rec/caf%E9.mp4"


def test_template_fields() -> None:
    k = key("/w/cam/a b.mp4", "{prefix}/{date}/{stem}-{stream_id}.{ext}", stream_id="s1")
    assert k == "rec/2024/01/02/a b-s1.mp4"
    assert key("/w/cam/noext", "{prefix}/{stem}.{ext}") == "rec/noext."
    assert key("/w/cam/a.b.mkv", "{name}|{stem}|{ext}") == "a.b.mkv|a.b|mkv"


@pytest.mark.parametrize(
    "template",
    [
        "{prefix}/{relpath}",
        "{relpath}",
        "{name}",
        "{prefix}/{stem}.mp4",
        "{stream_id}",
        "x/{date}/{name}",
    ],
)
def test_valid_templates(template: str) -> None:
    validate_template(template)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{prefix}/{bogus}", "unknown field"),
        ("{prefix}/{relpath.upper}", "unknown field"),
        ("{prefix}/{relpath[0]}", "unknown field"),
        ("{prefix}/{}", "unknown field"),
        ("{prefix}/{0}", "unknown field"),
        ("{prefix}/{date}", "must contain"),
        ("{prefix}/{ext}", "must contain"),
        ("static-name.mp4", "must contain"),
        ("{prefix}/{relpath", "malformed"),
    ],
)
def test_invalid_templates(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_template(template)


def test_key_longer_than_1024_bytes_raises() -> None:
    room = MAX_KEY_BYTES - len("rec/")
    assert len(key("/w/" + "a" * room).encode()) == MAX_KEY_BYTES
    with pytest.raises(ValueError, match="1024"):
        key("/w/" + "a" * (room + 1))
    with pytest.raises(ValueError, match="1024"):  # bytes, not characters
        key("/w/" + "ü" * (room // 2 + 1))


def test_a_template_that_renders_nothing_raises() -> None:
    with pytest.raises(ValueError, match="empty key"):
        key("/w/noext", "{prefix}/{ext}", prefix="")


@pytest.mark.parametrize(
    ("key", "n", "numbered_key"),
    [
        ("rec/cam1.mp4", 2, "rec/cam1 (2).mp4"),
        ("rec/cam1.mp4", 11, "rec/cam1 (11).mp4"),
        ("rec/a.b/cam1.tar.mkv", 2, "rec/a.b/cam1.tar (2).mkv"),  # only the last extension
        ("cam1.mp4", 3, "cam1 (3).mp4"),  # bucket root
        ("rec/notes", 2, "rec/notes (2)"),  # no extension
        ("rec/.mp4", 2, "rec/.mp4 (2)"),  # a name that only starts with a dot
        ("rec/cam1.mp4", 1, "rec/cam1.mp4"),  # the first take keeps its key
    ],
)
def test_keep_both_numbers_the_name(key: str, n: int, numbered_key: str) -> None:
    assert numbered(key, n) == numbered_key


def test_a_numbered_key_over_the_limit_is_refused() -> None:
    key = "a" * 1020 + ".mp4"
    with pytest.raises(KeyTooLong):
        numbered(key, 2)
