"""`stream-ingest blocks register`: register the block types and save the blocks from
the seed settings, all under one name (the settings' `config_block`):

  ingest-config/NAME     the options, and references to the two below
  stream-bucket/NAME     bucket and credentials (aws-credentials nested in it)
  checkpoint-store/NAME  the namespace, and a reference to redis-database/NAME

Saving again overwrites them: the environment wins at registration time, the blocks
at run time.
"""

from __future__ import annotations

from prefect_aws import AwsClientParameters, AwsCredentials
from prefect_redis import RedisDatabase

from stream_ingest.blocks.bucket import StreamBucket
from stream_ingest.blocks.checkpoints import CheckpointStore
from stream_ingest.blocks.config import IngestConfig
from stream_ingest.options import OPTION_FIELDS
from stream_ingest.settings import Settings

# botocore: retry throttling and 5xx itself (standard mode), fail fast on a dead
# endpoint, and keep enough pooled connections for the parts in flight.
BOTO_CONFIG = {
    "retries": {"max_attempts": 4, "mode": "standard"},
    "connect_timeout": 5,
    "read_timeout": 60,
    "max_pool_connections": 32,
}


# botocore's S3 setting that leaves request bodies out of the signature.
UNSIGNED_PAYLOAD = {"payload_signing_enabled": False}


def boto_config(settings: Settings) -> dict[str, object]:
    """botocore's config for the bucket's client. Over https:// botocore already leaves
    a body that carries a checksum unsigned; over http:// it hashes every body for the
    signature, a second SHA-256 of every part beside the file's own (docs/configure.md)."""
    if settings.s3_payload_signing:
        return BOTO_CONFIG
    return {**BOTO_CONFIG, "s3": UNSIGNED_PAYLOAD}


def build_config(settings: Settings) -> IngestConfig:
    """The blocks the settings describe, unsaved."""
    params = AwsClientParameters(
        endpoint_url=settings.s3_endpoint_url, config=boto_config(settings)
    )
    credentials = AwsCredentials(
        aws_access_key_id=(
            settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None
        ),
        aws_secret_access_key=settings.aws_secret_access_key,
        region_name=settings.aws_region,
        aws_client_parameters=params,
    )
    # The key prefix lives in the IngestConfig (s3_prefix) with the key template, so
    # the S3Bucket's own folder stays empty.
    bucket = StreamBucket(bucket_name=settings.s3_bucket, credentials=credentials)
    checkpoints = CheckpointStore(
        redis=RedisDatabase.from_connection_string(settings.redis_url),
        namespace=settings.redis_namespace,
    )
    return IngestConfig(
        bucket=bucket,
        checkpoints=checkpoints,
        **settings.model_dump(include=set(OPTION_FIELDS)),
    )


def register_blocks(settings: Settings) -> list[str]:
    """Register the block types and save every block under `settings.config_block`.
    Returns a line per block for the CLI to print (no secrets)."""
    name = settings.config_block
    config = build_config(settings)
    for block_type in (StreamBucket, RedisDatabase, CheckpointStore, IngestConfig):
        block_type.register_type_and_schema()
    # Saved one by one, so the config refers to named blocks an operator can edit.
    config.bucket.save(name, overwrite=True)
    config.checkpoints.redis.save(name, overwrite=True)
    config.checkpoints.save(name, overwrite=True)
    config.save(name, overwrite=True)
    endpoint = f" at {settings.s3_endpoint_url}" if settings.s3_endpoint_url else ""
    return [
        f"stream-bucket/{name}: s3://{settings.s3_bucket}{endpoint}",
        f"redis-database/{name}: {_redis_where(config.checkpoints.redis)}",
        f"checkpoint-store/{name}: namespace {settings.redis_namespace}",
        f"ingest-config/{name}: prefix {settings.s3_prefix!r}, watch {settings.watch_dir}",
    ]


def _redis_where(db: RedisDatabase) -> str:
    if db.connection_url is not None:  # Sentinel: the URL may carry a password
        return "sentinel (connection URL)"
    return f"{db.host}:{db.port}/{db.db}"
