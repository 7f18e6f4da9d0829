"""What an S3 store does with the features stream-ingest relies on where it can (pure).

S3 APIs differ on three of them: Ceph's RADOS Gateway accepts the If-None-Match
condition on CompleteMultipartUpload and ignores it (the key is overwritten), accepts
part checksums and keeps none, and drops tags given when an upload is created.
`StreamBucket.capabilities` finds them out by doing each once (stream_ingest/blocks/bucket.py);
what the product does where one is missing:

- conditional completion: a HEAD of the key just before the completion refuses a
  key already taken; a key taken between that HEAD and the completion is replaced
  (a narrower guard: docs/guarantees.md).
- checksums: a completed object is proved ours by the upload's mark in its metadata
  and its size instead (stream_ingest/verify.py).
- tags at create: none are given there; the object is tagged after its completion
  (PutObjectTagging), so this one is reported only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Capabilities:
    """Each: True (the store does it), False (it does not), None (the probe could
    not tell, e.g. a permission it lacks): the product acts as for False."""

    conditional_complete: bool | None = None
    checksums: bool | None = None
    tags_on_create: bool | None = None

    def missing(self) -> list[str]:
        """What the store lacks, each with the path the product takes instead.

        >>> Capabilities(True, True, True).missing()
        []
        >>> Capabilities(False, True, True).missing()[0].split(":")[0]
        'conditional completion (If-None-Match on CompleteMultipartUpload) is ignored'
        """
        out = []
        if not self.conditional_complete:
            out.append(
                f"conditional completion (If-None-Match on CompleteMultipartUpload) is "
                f"{_how(self.conditional_complete, 'ignored')}: a HEAD just before each "
                f"completion guards the key, and a key taken after that HEAD is replaced"
            )
        if not self.checksums:
            out.append(
                f"part checksums are {_how(self.checksums, 'not kept')}: completed objects "
                f"are proved by the upload's mark and their size"
            )
        if not self.tags_on_create:
            out.append(
                f"tags given at CreateMultipartUpload are {_how(self.tags_on_create, 'dropped')}"
                f": objects are tagged after completion"
            )
        return out

    def summary(self) -> str:
        """One line for `doctor`.

        >>> Capabilities(True, False, None).summary()
        'conditional completion honoured, checksums not kept, tags at create unknown'
        """
        return ", ".join(
            f"{name} {_word(value, yes, no)}"
            for name, value, yes, no in (
                ("conditional completion", self.conditional_complete, "honoured", "ignored"),
                ("checksums", self.checksums, "kept", "not kept"),
                ("tags at create", self.tags_on_create, "kept", "dropped"),
            )
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Capabilities:
        return cls(**{k: v for k, v in json.loads(text).items() if k in cls.__dataclass_fields__})


def _how(value: bool | None, no: str) -> str:
    return "unknown (the probe could not tell)" if value is None else no


def _word(value: bool | None, yes: str, no: str) -> str:
    return "unknown" if value is None else yes if value else no
