"""Checkpoint records and their Redis encodings."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from stream_ingest.records import PartRecord, StreamRecord
from stream_ingest.states import Status

text = st.text(max_size=40)
ints = st.integers(min_value=-(2**62), max_value=2**62)

stream_records = st.builds(
    StreamRecord,
    stream_id=st.text(min_size=1, max_size=40),
    original_path=text,
    identity=text,
    status=st.sampled_from(Status),
    s3_bucket=text,
    s3_key=text,
    s3_upload_id=text,
    part_base_bytes=ints,
    started_at_utc=text,
    last_activity_at_utc=text,
    completed_at_utc=text,
    bytes_uploaded=ints,
    total_bytes=ints,
    parts_count=ints,
    reuploaded_parts=ints,
    failures=ints,
    flow_run_id=text,
    error=text,
    sha256=text,
)
part_records = st.builds(
    PartRecord, number=st.integers(1, 10_000), etag=text, offset=ints, size=ints, checksum=text
)


@given(stream_records)
def test_stream_record_hash_round_trip(record: StreamRecord) -> None:
    encoded = record.to_hash()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in encoded.items())
    assert StreamRecord.from_hash(encoded) == record


@given(stream_records)
def test_stream_record_round_trip_from_redis_bytes(record: StreamRecord) -> None:
    raw = {k.encode(): v.encode() for k, v in record.to_hash().items()}
    decoded = StreamRecord.from_hash(raw)  # type: ignore[arg-type]
    assert decoded == record
    assert isinstance(decoded.status, Status)
    assert isinstance(decoded.bytes_uploaded, int)


def test_missing_fields_read_as_defaults_and_unknown_ones_are_ignored() -> None:
    record = StreamRecord.from_hash({b"stream_id": b"s1", b"future_field": b"x"})
    assert record.stream_id == "s1"
    assert record.status is Status.DETECTED
    assert record.total_bytes == -1
    assert record.bytes_uploaded == 0


def test_public_shape_is_json() -> None:
    record = StreamRecord(stream_id="s1", status=Status.UPLOADING, bytes_uploaded=5)
    public = json.loads(json.dumps(record.public()))
    assert public["status"] == "uploading"
    assert public["bytes_uploaded"] == 5
    assert set(public) == set(record.to_hash())


@given(part_records)
def test_part_record_json_round_trip(part: PartRecord) -> None:
    encoded = part.to_json()
    assert PartRecord.from_json(encoded) == part
    assert PartRecord.from_json(encoded.encode()) == part  # as Redis returns it
    assert json.loads(encoded)["number"] == part.number
