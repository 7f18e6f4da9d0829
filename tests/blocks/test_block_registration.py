"""Building the blocks from the settings (no Prefect server: registration against a
server is exercised by the flow tests)."""

from __future__ import annotations

from prefect_aws import AwsCredentials
from prefect_aws.s3 import S3Bucket
from prefect_redis import RedisDatabase

from blocks.bucket import StreamBucket
from blocks.registration import BOTO_CONFIG, build_blocks
from stream_ingest.services import RedisServer
from stream_ingest.settings import load_settings


def test_stream_bucket_has_its_own_block_type() -> None:
    assert StreamBucket.get_block_type_slug() == "stream-bucket"
    assert StreamBucket.get_block_type_name() == "Stream Bucket"
    assert S3Bucket.get_block_type_slug() == "s3-bucket"  # the stock type is untouched
    assert issubclass(StreamBucket, S3Bucket)


def test_build_blocks_from_settings(redis_server: RedisServer) -> None:
    settings = load_settings(
        s3_bucket="my-recordings",
        s3_prefix="/rec/",
        s3_endpoint_url="http://127.0.0.1:9000",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="secret-example",
        aws_region="eu-west-1",
        redis_url=redis_server.url,
    )
    bucket, redis_block = build_blocks(settings)

    assert isinstance(bucket, StreamBucket)
    assert (bucket.bucket_name, bucket.bucket_folder) == ("my-recordings", "rec")
    creds = bucket.credentials
    assert isinstance(creds, AwsCredentials)
    assert creds.aws_access_key_id == "AKIAEXAMPLE"
    assert creds.aws_secret_access_key is not None
    assert creds.aws_secret_access_key.get_secret_value() == "secret-example"
    assert creds.region_name == "eu-west-1"
    params = creds.aws_client_parameters
    assert params.endpoint_url == "http://127.0.0.1:9000"
    assert params.config == BOTO_CONFIG
    client = bucket.s3
    assert client.meta.endpoint_url == "http://127.0.0.1:9000"
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.connect_timeout == BOTO_CONFIG["connect_timeout"]
    # botocore counts the first attempt on top of max_attempts retries
    assert client.meta.config.retries["total_max_attempts"] == 4 + 1
    assert "secret-example" not in repr(bucket)

    assert isinstance(redis_block, RedisDatabase)
    assert redis_block.connection_url is not None
    assert redis_block.connection_url.get_secret_value() == redis_server.url
    client = redis_block.get_client()
    try:
        assert client.connection_pool.connection_kwargs["port"] == redis_server.port
        assert client.ping()
    finally:
        client.close()


def test_build_blocks_without_keys_uses_the_default_chain() -> None:
    bucket, _ = build_blocks(load_settings())
    creds = bucket.credentials
    assert isinstance(creds, AwsCredentials)
    assert creds.aws_access_key_id is None and creds.aws_secret_access_key is None
    assert creds.aws_client_parameters.endpoint_url is None
