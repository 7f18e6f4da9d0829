"""The IngestConfig block and its registration, against the Prefect test server: one
document configures every component, it refers to the bucket and checkpoint blocks
(so an edit of either reaches it), and bad or missing documents fail with a line that
says what to do."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect_aws.s3 import S3Bucket

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.config import IngestConfig, load_config
from stream_ingest.blocks.registration import BOTO_CONFIG, build_config, register_blocks
from stream_ingest.errors import ConfigurationError
from stream_ingest.options import OPTION_FIELDS
from stream_ingest.settings import load_settings

SECRET = "secret-example-8f3a"


@pytest.fixture
def seeded(prefect_harness, redis_server, namespace, monkeypatch):
    settings = load_settings(
        config_block=f"cfg-{namespace}",
        s3_bucket="my-recordings",
        s3_prefix="/rec/",
        s3_endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key=SECRET,
        aws_region="eu-west-1",
        redis_url=redis_server.url,
        redis_namespace=namespace,
        part_size_mib=6,
        video_extensions="mp4,mkv",
        retention_days=7,
    )
    lines = register_blocks(settings)
    return settings, lines


def test_register_then_load_gives_every_setting_back(seeded) -> None:
    settings, lines = seeded
    config = load_config(settings.config_block)

    assert config.options() == settings.options()
    assert config.s3_prefix == "rec" and config.video_extensions == (".mp4", ".mkv")
    assert config.bucket.bucket_name == "my-recordings"
    assert config.checkpoints.namespace == settings.redis_namespace
    assert config.retention_days == 7
    assert config.checkpoints.retention_seconds == 7 * 86_400  # the store applies it
    assert config.checkpoints.redis_client.ping()
    creds = config.bucket.credentials
    assert creds.aws_secret_access_key.get_secret_value() == SECRET
    assert creds.aws_client_parameters.config == BOTO_CONFIG
    assert config.bucket.s3.meta.region_name == "eu-west-1"
    # The subclass has a type of its own: nothing was saved as a stock s3-bucket.
    with pytest.raises(ValueError):
        S3Bucket.load(settings.config_block)
    assert not any(SECRET in line for line in lines)
    assert SECRET not in repr(config)


def test_an_edit_of_a_referenced_block_reaches_the_config(seeded) -> None:
    """What an operator does in the UI's Blocks page: edit the bucket block, or the
    checkpoint store's namespace; the IngestConfig loads the edited blocks."""
    settings, _ = seeded
    bucket = StreamBucket.load(settings.config_block)
    bucket.bucket_name = "other-recordings"
    bucket.save(settings.config_block, overwrite=True)
    store = CheckpointStore.load(settings.config_block)
    store.namespace = "edited-ns"
    store.save(settings.config_block, overwrite=True)
    config = IngestConfig.load(settings.config_block)
    config.s3_prefix = "moved"
    config.retention_days = 90
    config.save(settings.config_block, overwrite=True)

    reloaded = load_config(settings.config_block)
    assert reloaded.bucket.bucket_name == "other-recordings"
    assert reloaded.checkpoints.namespace == "edited-ns"
    assert reloaded.s3_prefix == "moved"
    assert reloaded.checkpoints.retention_seconds == 90 * 86_400


def test_a_missing_config_names_the_command_that_creates_it(prefect_harness) -> None:
    with pytest.raises(ConfigurationError, match="stream-ingest blocks register"):
        load_config("never-registered")


def test_an_invalid_document_names_the_field(seeded) -> None:
    """A value the UI's form let through (no schema check there) is caught at load."""
    settings, _ = seeded
    with get_client(sync_client=True) as client:
        doc = client.read_block_document_by_name(settings.config_block, "ingest-config")
        from prefect.client.schemas.actions import BlockDocumentUpdate

        data = {k: v for k, v in doc.data.items() if k in OPTION_FIELDS}
        data["part_size_mib"] = 2
        client.update_block_document(
            doc.id, BlockDocumentUpdate(data=data, merge_existing_data=True)
        )
    with pytest.raises(ConfigurationError, match="part_size_mib") as info:
        load_config(settings.config_block)
    assert "Blocks page" in str(info.value)


def test_without_keys_the_bucket_uses_boto3s_default_chain() -> None:
    config = build_config(load_settings())
    creds = config.bucket.credentials
    assert creds.aws_access_key_id is None and creds.aws_secret_access_key is None
    assert creds.aws_client_parameters.endpoint_url is None


def test_the_checkpoint_client_gives_up_in_seconds_when_redis_is_down() -> None:
    """Timeouts are part of the client as built (not patched in afterwards)."""
    import time

    from stream_ingest.errors import CheckpointUnavailable

    store = CheckpointStore.from_url("redis://127.0.0.1:9/0", "t")
    started = time.monotonic()
    with pytest.raises(CheckpointUnavailable):
        store.ping()
    assert time.monotonic() - started < 30
    assert store.redis_client.connection_pool.connection_kwargs["socket_timeout"] == 10


def test_without_an_api_url_nothing_starts_a_server_of_its_own() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(ConfigurationError, match="PREFECT_API_URL"),
    ):
        load_config("stream-ingest")
