"""Settings from STREAM_INGEST_* variables: bad values name their variable, secrets stay
secret."""

from __future__ import annotations

import pytest

from stream_ingest.keys import validate_template
from stream_ingest.options import DEFAULT_EXTENSIONS
from stream_ingest.settings import SettingsError, load_settings

AWS_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
REDIS_PASSWORD = "hunter2-redis-pw"
REDIS_URL = f"redis://default:{REDIS_PASSWORD}@redis.example:6380/2"


def test_defaults_load(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.part_size_mib == 8 and s.part_size_bytes == 8 * 1024 * 1024
    assert s.video_extensions == DEFAULT_EXTENSIONS
    assert s.s3_key_template == "{prefix}/{relpath}"
    validate_template(s.s3_key_template)
    assert s.watch_dir == "recordings"
    assert s.retention_days == 30 and s.retention_seconds == 30 * 86_400


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_INGEST_PART_SIZE_MIB", "5")
    monkeypatch.setenv("STREAM_INGEST_IDLE_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("STREAM_INGEST_S3_PREFIX", "/rec/cams/")
    monkeypatch.setenv("STREAM_INGEST_WATCH_DIR", "/data/in")
    s = load_settings()
    assert s.part_size_bytes == 5 * 1024 * 1024
    assert s.idle_timeout_seconds == 2.5
    assert s.s3_prefix == "rec/cams"
    assert s.watch_dir == "/data/in"


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_INGEST_S3_BUCKET", "from-env")
    assert load_settings(s3_bucket="from-override").s3_bucket == "from-override"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STREAM_INGEST_PART_SIZE_MIB", "4"),
        ("STREAM_INGEST_PART_SIZE_MIB", "5121"),
        ("STREAM_INGEST_PART_SIZE_MIB", "eight"),
        ("STREAM_INGEST_IDLE_TIMEOUT_SECONDS", "-1"),
        ("STREAM_INGEST_IDLE_TIMEOUT_SECONDS", "0"),
        ("STREAM_INGEST_S3_KEY_TEMPLATE", "{prefix}/{bogus}"),
        ("STREAM_INGEST_S3_KEY_TEMPLATE", "{prefix}/{date}"),
        ("STREAM_INGEST_S3_KEY_TEMPLATE", "{prefix}/{relpath"),
        ("STREAM_INGEST_REDIS_NAMESPACE", "has space"),
        ("STREAM_INGEST_S3_BUCKET", "ab"),
        ("STREAM_INGEST_MAX_PARTS_IN_FLIGHT", "0"),
        ("STREAM_INGEST_RETENTION_DAYS", "0"),
        ("STREAM_INGEST_RETENTION_DAYS", "0.5"),  # shorter than the upload TTL (24 h)
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert variable in message
    assert message.count("STREAM_INGEST_") == 1  # only the bad one


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_INGEST_PART_SIZE_MIB", "4")
    monkeypatch.setenv("STREAM_INGEST_IDLE_TIMEOUT_SECONDS", "-1")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "STREAM_INGEST_PART_SIZE_MIB" in str(info.value)
    assert "STREAM_INGEST_IDLE_TIMEOUT_SECONDS" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_the_retention_must_outlast_the_upload_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """The janitor aborts an orphaned upload through the registry entry that a stream
    past its retention takes along."""
    monkeypatch.setenv("STREAM_INGEST_RETENTION_DAYS", "0.5")
    monkeypatch.setenv("STREAM_INGEST_UPLOAD_TTL_HOURS", "12")
    assert load_settings().retention_seconds == 43_200
    monkeypatch.setenv("STREAM_INGEST_UPLOAD_TTL_HOURS", "13")
    with pytest.raises(SettingsError, match=r"RETENTION_DAYS: .*upload_ttl_hours"):
        load_settings()


def test_bad_override_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="STREAM_INGEST_PART_SIZE_MIB"):
        load_settings(part_size_mib=4)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mp4, .MKV", (".mp4", ".mkv")),
        (".mov", (".mov",)),
        ("mp4,,ts,", (".mp4", ".ts")),
    ],
)
def test_video_extensions_from_a_comma_list(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("STREAM_INGEST_VIDEO_EXTENSIONS", raw)
    assert load_settings().video_extensions == expected


def test_ignore_patterns_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_INGEST_IGNORE_PATTERNS", ".*, *.tmp ,*.part,")
    assert load_settings().ignore_patterns == (".*", "*.tmp", "*.part")


def test_secrets_stay_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_INGEST_AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("STREAM_INGEST_REDIS_URL", REDIS_URL)
    s = load_settings()
    for text in (repr(s), str(s)):
        assert AWS_SECRET not in text
        assert REDIS_PASSWORD not in text
    assert s.aws_secret_access_key is not None
    assert s.aws_secret_access_key.get_secret_value() == AWS_SECRET
    assert s.redis_url.get_secret_value() == REDIS_URL


def test_secrets_stay_out_of_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_INGEST_AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("STREAM_INGEST_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("STREAM_INGEST_PART_SIZE_MIB", "4")
    monkeypatch.setenv("STREAM_INGEST_S3_KEY_TEMPLATE", "{bogus}")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value) + repr(info.value)
    assert AWS_SECRET not in text
    assert REDIS_PASSWORD not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_an_empty_endpoint_means_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_INGEST_S3_ENDPOINT_URL", "")
    assert load_settings().s3_endpoint_url is None
    monkeypatch.setenv("STREAM_INGEST_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert load_settings().s3_endpoint_url == "http://127.0.0.1:9000"


def test_an_endpoint_without_a_scheme_is_rejected_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_INGEST_S3_ENDPOINT_URL", "minio:9000")
    with pytest.raises(SettingsError, match="STREAM_INGEST_S3_ENDPOINT_URL"):
        load_settings()
