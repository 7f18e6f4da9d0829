"""Build the two blocks from the settings and save them: `stream-ingest blocks register`."""

from __future__ import annotations

from prefect_aws import AwsClientParameters, AwsCredentials
from prefect_redis import RedisDatabase

from blocks.bucket import StreamBucket
from stream_ingest.settings import Settings

# botocore: retry throttling and 5xx itself (standard mode), fail fast on a dead
# endpoint, and keep enough pooled connections for the parts in flight.
BOTO_CONFIG = {
    "retries": {"max_attempts": 4, "mode": "standard"},
    "connect_timeout": 5,
    "read_timeout": 60,
    "max_pool_connections": 32,
}


def build_blocks(settings: Settings) -> tuple[StreamBucket, RedisDatabase]:
    params = AwsClientParameters(endpoint_url=settings.s3_endpoint_url, config=BOTO_CONFIG)
    credentials = AwsCredentials(
        aws_access_key_id=(
            settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None
        ),
        aws_secret_access_key=settings.aws_secret_access_key,
        region_name=settings.aws_region,
        aws_client_parameters=params,
    )
    bucket = StreamBucket(
        bucket_name=settings.s3_bucket, credentials=credentials, bucket_folder=settings.s3_prefix
    )
    redis_block = RedisDatabase(connection_url=settings.redis_url)
    return bucket, redis_block


def register_blocks(settings: Settings) -> list[str]:
    """Register the block types and create or update both block documents.
    Returns a line per block for the CLI to print (no secrets)."""
    bucket, redis_block = build_blocks(settings)
    StreamBucket.register_type_and_schema()
    RedisDatabase.register_type_and_schema()
    bucket.save(settings.bucket_block, overwrite=True)
    redis_block.save(settings.redis_block, overwrite=True)
    return [
        f"stream-bucket/{settings.bucket_block}: s3://{settings.s3_bucket}/{settings.s3_prefix}"
        + (f" at {settings.s3_endpoint_url}" if settings.s3_endpoint_url else ""),
        f"redis-database/{settings.redis_block}: namespace {settings.redis_namespace}",
    ]
