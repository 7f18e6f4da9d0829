"""S3 key naming: pure functions, no I/O.

Keys are joined with "/" (never os.sep), relative to the watch folder, and can never
climb out of the prefix with "..". Control characters (C0 and C1) are percent-encoded
because S3 returns keys in XML 1.0, which cannot carry most of them; so is each byte of
a file name that is not UTF-8 (a key must be valid UTF-8), and "%" itself, so that two
different names never map to one key. Names are not Unicode-normalised: "é" as one
code point (NFC) and as "e" plus an accent (NFD) are two files, and two keys.
"""

from __future__ import annotations

import posixpath
import string
import unicodedata
from datetime import datetime
from pathlib import PurePath

from stream_ingest.errors import KeyTooLong

FIELDS = frozenset({"prefix", "relpath", "name", "stem", "ext", "stream_id", "date"})
MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length


def validate_template(template: str) -> None:
    """Raise ValueError unless `template` uses only the known fields and names the file."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"malformed key template {template!r}: {exc}") from None
    unknown = names - FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; use {sorted(FIELDS)}")
    if not names & {"relpath", "name", "stem", "stream_id"}:
        raise ValueError("the key template must contain {relpath}, {name}, {stem} or {stream_id}")


def relative_posix(path: PurePath, watch_dir: PurePath) -> str:
    """The file's path below the watch folder with "/" separators, or its bare name
    when it lies outside the folder. ".." never survives."""
    try:
        parts = path.relative_to(watch_dir).parts
    except ValueError:
        parts = (path.name,)
    clean = [p for p in parts if p not in ("", ".", "..", "/")]
    return "/".join(clean) or "unnamed"


def _escape_char(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (os.fsdecode's surrogateescape)
        return f"%{code - 0xDC00:02X}"
    if c == "%":  # the escape character itself, so that escaping stays one-to-one
        return "%25"
    if unicodedata.category(c) in ("Cc", "Cs") or c in "\ufffe\uffff":
        # C0/C1 controls, lone surrogates and U+FFFE/U+FFFF: not XML 1.0 characters (or
        # invisible); a surrogate would also make the key invalid UTF-8.
        return "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
    return c


def _escape(segment: str) -> str:
    return "".join(map(_escape_char, segment))


def object_key(
    template: str,
    *,
    prefix: str,
    path: PurePath,
    watch_dir: PurePath,
    stream_id: str,
    started: datetime,
) -> str:
    """Render the S3 key of one recording.

    >>> from datetime import datetime, timezone
    >>> object_key("{prefix}/{relpath}", prefix="rec", path=PurePath("/w/a b/ü.mp4"),
    ...            watch_dir=PurePath("/w"), stream_id="s", started=datetime.now(timezone.utc))
    'rec/a b/ü.mp4'
    """
    rel = relative_posix(path, watch_dir)
    name = rel.rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, ext = name, ""
    values = {
        "prefix": prefix.strip("/"),
        "relpath": rel,
        "name": name,
        "stem": stem,
        "ext": ext if dot else "",
        "stream_id": stream_id,
        "date": started.strftime("%Y/%m/%d"),
    }
    rendered = template.format(**values)
    # Normalise: no empty, "." or ".." segments, so a template or a file name can
    # neither escape the prefix nor produce "a//b" keys.
    segments = [s for s in rendered.split("/") if s not in ("", ".", "..")]
    key = "/".join(_escape(s) for s in segments)
    if not key:
        raise ValueError(f"template {template!r} renders an empty key for {path}")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise KeyTooLong(printable(str(path)), len(key.encode()))
    return posixpath.normpath(key)


def printable(path: str) -> str:
    """`path` for logs, events and JSON: bytes that are not UTF-8 shown as \\xNN
    (a name with them cannot be sent as JSON text as it is)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_text(path: str) -> bool:
    """Whether `path` is valid Unicode text (no undecodable bytes): only then can it
    travel in a flow run's JSON parameters."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def numbered(key: str, n: int) -> str:
    """The key of the n-th take that wanted `key` (on_existing=keep-both): " (n)"
    before the name's last extension, like a file manager's copies.

    >>> numbered("rec/cam1.mp4", 2), numbered("rec/notes", 3), numbered("rec/.hidden", 2)
    ('rec/cam1 (2).mp4', 'rec/notes (3)', 'rec/.hidden (2)')
    """
    if n < 2:
        return key
    folder, slash, name = key.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a name that only starts with a dot
        stem, dot, ext = name, "", ""
    out = f"{folder}{slash}{stem} ({n}){dot}{ext}"
    if len(out.encode()) > MAX_KEY_BYTES:
        raise KeyTooLong(key, len(out.encode()))
    return out
