"""Whether a completed object is made of our parts, on any S3 store (pure).

The multipart ETag (the MD5 of the parts' MD5s, "-N") proves it where the store
computes ETags that way; AWS does not for objects encrypted with SSE-KMS or SSE-C, nor
does Google Cloud Storage, and their ETags are opaque. The parts' CRC32 checksums,
which S3 composes at completion (the CRC32 of the parts' checksums, "-N"), prove it on
every store that keeps checksums. A store that keeps neither (Ceph's gateway ignores
checksums) still keeps the object's metadata: the mark each upload of ours carries
says the object was completed from that very upload, and its size that it holds the
file's bytes count. Only an ETag that matches is taken as proof by itself: any other
ETag may be opaque, so the checksum or the mark decides.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectFacts:
    """What a store said about an object: its ETag, its composite CRC32 ("" where the
    store gave none), its upload mark (object metadata; "" unknown) and its size
    (None where the answer does not carry it: a completion's answer)."""

    etag: str = ""
    crc32: str = ""
    mark: str = ""
    size: int | None = None


def multipart_etag(etags: Sequence[str]) -> str:
    """The ETag an MD5-based store gives an object completed from parts with these
    ETags (MD5 of the concatenated part MD5s, then "-N")."""
    try:
        raw = b"".join(bytes.fromhex(e.strip('"')) for e in etags)
    except ValueError:
        return ""  # a part ETag that is not an MD5 (an opaque store): no such ETag
    return f'"{hashlib.md5(raw).hexdigest()}-{len(etags)}"'


def composite_crc32(crcs: Sequence[str]) -> str:
    """S3's checksum of an object completed from parts with these CRC32s (base64): the
    CRC32 of their concatenated bytes, then "-N"; "" if a part has none.

    >>> composite_crc32(["AAAAAA==", "AAAAAA=="])
    'ZSLfaQ==-2'
    >>> composite_crc32(["AAAAAA==", ""])
    ''
    """
    if not crcs or not all(crcs):
        return ""
    raw = b"".join(base64.b64decode(c) for c in crcs)
    value = zlib.crc32(raw).to_bytes(4, "big")
    return f"{base64.b64encode(value).decode()}-{len(crcs)}"


def holds_parts(
    facts: ObjectFacts,
    etags: Sequence[str],
    crcs: Sequence[str],
    mark: str,
    size: int | None = None,
) -> bool:
    """Whether the object `facts` describes was completed from these parts (and holds
    `size` bytes, where both are known).

    >>> md5 = ['"' + "0" * 32 + '"']
    >>> holds_parts(ObjectFacts(etag=multipart_etag(md5)), md5, [""], "m")
    True
    >>> whole = composite_crc32(["AAAAAA=="])
    >>> holds_parts(ObjectFacts(etag='"opaque"', crc32=whole), md5, ["AAAAAA=="], "")
    True
    >>> holds_parts(ObjectFacts(etag='"opaque"', crc32="BBBBBB==-1"), md5, ["AAAAAA=="], "m")
    False
    >>> holds_parts(ObjectFacts(etag='"opaque"', mark="m", size=9), md5, [""], "m", 9)
    True
    >>> holds_parts(ObjectFacts(etag='"opaque"', mark="m", size=8), md5, [""], "m", 9)
    False
    >>> holds_parts(ObjectFacts(etag='"opaque"', mark="other", size=9), md5, [""], "m", 9)
    False
    """
    if size is not None and facts.size is not None and facts.size != size:
        return False
    expected = multipart_etag(etags)
    if facts.etag and expected and facts.etag == expected:
        return True
    ours = composite_crc32(crcs)
    if facts.crc32 and ours:
        # Some stores give the composite checksum without its "-N" in a HEAD.
        return facts.crc32 == ours or facts.crc32 == ours.split("-")[0]
    return bool(mark) and facts.mark == mark and facts.size is not None
