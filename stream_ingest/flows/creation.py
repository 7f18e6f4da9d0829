"""Creating a multipart upload so that it is never lost to the janitor: announced in
Redis before S3 creates it, registered after. An announcement that never ended (the
run died between the two) makes the next creation for that stream and key, or the
janitor once it is older than the upload TTL, register every upload S3 holds under
the key that no entry names: from then on they are uploads of ours like any other,
aborted when they are not their stream's current one."""

from __future__ import annotations

from collections.abc import Callable

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.checkpoints import CheckpointStore


def create_registered(
    bucket: StreamBucket,
    store: CheckpointStore,
    stream_id: str,
    key: str,
    create: Callable[[], str],
) -> str:
    """`create()` the upload for `stream_id` at `key` and register it."""
    unfinished = store.parts.begin_creation(stream_id, key)
    if unfinished is not None:
        adopt_unregistered(bucket, store, stream_id, key, unfinished)
    upload_id = create()
    store.parts.register_upload(upload_id, stream_id, key)
    store.parts.end_creation(stream_id, key)
    return upload_id


def adopt_unregistered(
    bucket: StreamBucket, store: CheckpointStore, stream_id: str, key: str, since: float
) -> list[str]:
    """Register, for `stream_id`, the uploads at exactly `key` that no entry names."""
    known = store.parts.uploads()
    found = [
        u.upload_id
        for u in bucket.list_multipart_uploads(key)
        if u.key == key and u.upload_id not in known
    ]
    for upload_id in found:
        store.parts.adopt_upload(upload_id, stream_id, key, since)
    return found
