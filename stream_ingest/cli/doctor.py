"""`stream-ingest doctor`: one line per thing the product needs, each found by doing
what the product does (a multipart upload that is aborted at once, the Redis commands
the checkpoints use on keys of its own), never by guessing.

Each check returns a `Check`; the CLI prints them and exits non-zero if one failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from stream_ingest.blocks.config import IngestConfig, load_config
from stream_ingest.errors import BucketMissing, CredentialsRejected, StreamError
from stream_ingest.parts import DOUBLING_INTERVAL, MAX_PARTS, PartPlan, human

R2_HOST = ".r2.cloudflarestorage.com"  # Cloudflare R2's S3 endpoints: ACCOUNT.r2...


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(name: str, watch: str | None = None) -> Iterator[Check]:
    """Every check in order; those that need the config are skipped without it."""
    try:
        config = load_config(name)
    except StreamError as exc:
        yield Check("settings", False, str(exc))
        yield from prefect_checks(None)
        return
    yield Check(
        "settings",
        True,
        f"ingest-config/{name}: s3://{config.bucket.bucket_name}/{config.s3_prefix}, "
        f"Redis namespace {config.checkpoints.namespace}, parts {config.part_size_mib} MiB",
    )
    yield parts_check(config)
    yield media_check(config)
    yield from bucket_checks(config)
    yield from redis_checks(config)
    yield from prefect_checks(config)
    yield alerts_check(config, name)
    yield watch_check(watch or config.watch_dir)


def parts_check(config: IngestConfig) -> Check:
    """The largest recording each part-size policy allows with the configured size,
    and whether the one in use suits the store (Cloudflare R2 completes only parts of
    one size but the last)."""
    base = config.part_size_bytes
    growing, fixed = PartPlan(base), PartPlan(base, fixed=True)
    detail = (
        f"in use: {config.part_size_policy}; largest recording: {human(growing.largest)} "
        f"growing from {human(base)}, {human(fixed.largest)} fixed at {human(base)} "
        f"({MAX_PARTS:,} parts)"
    )
    endpoint = getattr(config.bucket.credentials.aws_client_parameters, "endpoint_url", None)
    if config.part_size_policy == "growing" and R2_HOST in str(endpoint or ""):
        past = human(DOUBLING_INTERVAL * base)
        return Check("part sizes", False, f"{detail}: R2 needs fixed (recordings past {past} fail)")
    return Check("part sizes", True, detail)


def media_check(config: IngestConfig) -> Check:
    """Whether ffprobe is there to read recordings' media facts: never a failure
    (recordings complete without them), and found here, where doctor runs: a worker
    on another host needs it on its own PATH."""
    wanted = config.ffprobe_path
    if not wanted:
        return Check("ffprobe", True, "off (ffprobe_path ''): no media facts are read")
    found = shutil.which(wanted)
    if found is None:
        return Check(
            "ffprobe", True, f"{wanted} not found: recordings complete without media facts"
        )
    try:
        answer = subprocess.run(
            [found, "-version"], capture_output=True, text=True, timeout=10, check=False
        )
        first = (answer.stdout.splitlines() or ["no version"])[0]
        version = first.split(" Copyright")[0].strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("ffprobe", False, f"{found} does not run: {_one_line(exc)}")
    return Check("ffprobe", True, f"{found} ({version}): media facts are read after completion")


def bucket_checks(config: IngestConfig) -> Iterator[Check]:
    """Credentials and bucket: HeadBucket, then a one-part multipart upload that is
    aborted (what every stream does first), under the prefix."""
    bucket = config.bucket
    where = f"s3://{bucket.bucket_name}"
    creds = config.bucket.credentials
    source = "from the block" if creds.aws_access_key_id else "from boto3's default chain"
    try:
        bucket.check_bucket()
    except CredentialsRejected as exc:
        yield Check("credentials", False, f"{exc} ({source})")
        yield Check("bucket", False, f"{where}: not checked, credentials rejected")
        return
    except BucketMissing as exc:
        yield Check("credentials", True, f"accepted ({source})")
        yield Check("bucket", False, str(exc))
        return
    except StreamError as exc:
        yield Check("credentials", False, f"not checked: {exc}")
        yield Check("bucket", False, str(exc))
        return
    yield Check("credentials", True, f"accepted ({source})")
    key = "/".join(p for p in (config.s3_prefix, f".stream-ingest-doctor-{uuid.uuid4()}") if p)
    try:
        upload_id = bucket.create_multipart_upload(key)
        try:
            bucket.upload_part(key, upload_id, 1, b"stream-ingest doctor")
        finally:
            bucket.abort_multipart_upload(key, upload_id)
    except Exception as exc:
        yield Check("bucket", False, f"{where}: multipart upload refused: {_one_line(exc)}")
        return
    yield Check("bucket", True, f"{where} exists; multipart upload, part and abort allowed")
    yield from capability_checks(config, key)


def capability_checks(config: IngestConfig, near: str) -> Iterator[Check]:
    """What the store does with conditional completion, checksums and tags at create,
    probed now (never the cached answer) next to `near`, and what the product does
    instead of each it lacks: a documented path, so not a failure."""
    try:
        caps = config.bucket.capabilities(near, fresh=True)
    except StreamError as exc:
        yield Check("s3 capabilities", False, f"probe failed: {exc}")
        return
    # The flows read the probe's answer from Redis: give them this one. (Redis is
    # checked next, and a failure reported there.)
    with contextlib.suppress(StreamError, redis.RedisError):
        config.checkpoints.hints.cache_capabilities(config.bucket.store_id, caps.to_json())
    yield Check("s3 capabilities", True, caps.summary())
    if config.bucket.unsigned_over_http:
        crc = "for the store to check" if caps.checksums else "but this store keeps none"
        yield Check(
            "payload signing",
            True,
            f"off on this http:// endpoint (s3_payload_signing): a body on the way could be "
            f"changed unseen; each part carries its CRC32, {crc}",
        )
    for missing in caps.missing():
        yield Check("s3 lacks", True, missing)


def redis_checks(config: IngestConfig) -> Iterator[Check]:
    store = config.checkpoints
    client = store.redis_client
    try:
        client.ping()
    except redis.RedisError as exc:
        yield Check("redis", False, f"unreachable: {_one_line(exc)}")
        return
    yield Check("redis", True, f"reachable, namespace {store.namespace}")
    yield _persistence(client)
    yield _permissions(client, store.namespace)


def _persistence(client: redis.Redis) -> Check:
    """Checkpoints must survive a Redis restart: AOF or RDB snapshots."""
    try:
        conf = client.config_get("appendonly") | client.config_get("save")
        aof, save = conf.get("appendonly") == "yes", bool(conf.get("save"))
    except redis.RedisError:
        try:  # CONFIG is often not allowed for an application user; INFO may be
            info = client.info("persistence")
        except redis.RedisError as exc:
            return Check("redis persistence", False, f"cannot tell: {_one_line(exc)}")
        aof, save = bool(info.get("aof_enabled")), info.get("rdb_last_save_time", 0) > 0
    if aof or save:
        return Check("redis persistence", True, "append-only file" if aof else "RDB snapshots")
    return Check(
        "redis persistence",
        False,
        "off: a restart loses every checkpoint (appendonly yes, or a save schedule)",
    )


def _permissions(client: redis.Redis, namespace: str) -> Check:
    """Run each command the checkpoints use on a doctor key of the namespace."""
    base = f"{namespace}:doctor:{uuid.uuid4()}"
    steps: list[tuple[str, Callable[[], object]]] = [
        ("SET", lambda: client.set(base, "1", px=60_000)),
        ("GET", lambda: client.get(base)),
        ("EXISTS", lambda: client.exists(base)),
        ("HSET", lambda: client.hset(base + ":h", "a", "1")),
        ("HSETNX", lambda: client.hsetnx(base + ":h", "b", "1")),
        ("HGET", lambda: client.hget(base + ":h", "a")),
        ("HGETALL", lambda: client.hgetall(base + ":h")),
        ("HINCRBY", lambda: client.hincrby(base + ":h", "a", 1)),
        ("HLEN", lambda: client.hlen(base + ":h")),
        ("HDEL", lambda: client.hdel(base + ":h", "b")),
        ("SADD", lambda: client.sadd(base + ":s", "x")),
        ("SMEMBERS", lambda: client.smembers(base + ":s")),
        ("SREM", lambda: client.srem(base + ":s", "x")),
        ("ZADD", lambda: client.zadd(base + ":z", {"x": 1})),
        ("ZRANGE", lambda: client.zrange(base + ":z", 0, -1)),
        ("ZREM", lambda: client.zrem(base + ":z", "x")),
        ("PEXPIRE", lambda: client.pexpire(base + ":h", 60_000)),
        ("PTTL", lambda: client.pttl(base + ":h")),
        ("PERSIST", lambda: client.persist(base + ":h")),
        ("WATCH/MULTI/EXEC", lambda: client.transaction(lambda p: p.multi(), base)),
        ("EVALSHA", lambda: client.register_script("return 1")()),
        ("DEL", lambda: client.delete(base, base + ":h", base + ":s", base + ":z")),
    ]
    for command, step in steps:
        try:
            step()
        except redis.exceptions.NoPermissionError:
            client.delete(base, base + ":h", base + ":s", base + ":z")
            return Check("redis permissions", False, f"{command} is not allowed on {namespace}:*")
        except redis.RedisError as exc:
            return Check("redis permissions", False, f"{command} failed: {_one_line(exc)}")
    return Check("redis permissions", True, f"every command the checkpoints use, on {namespace}:*")


def prefect_checks(config: IngestConfig | None) -> Iterator[Check]:
    """The server and its version, then the deployments and the work pool they use."""
    import prefect
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            server = client.api_version()
    except Exception as exc:
        yield Check("prefect server", False, f"unreachable: {_one_line(exc)}")
        return
    ours = prefect.__version__
    same_major = server.split(".")[0] == ours.split(".")[0]
    yield Check(
        "prefect server",
        same_major,
        f"version {server} (this client {ours})"
        + ("" if same_major else ": major versions differ, upgrade one side"),
    )
    if config is None:
        return
    pools: set[str] = set()
    with get_client(sync_client=True) as client:
        for name in (config.deployment, "janitor/janitor"):
            try:
                deployment = client.read_deployment_by_name(name)
            except ObjectNotFound:
                yield Check("deployment", False, f"{name} not found: run `prefect deploy --all`")
                continue
            if not deployment.work_pool_name:
                yield Check("deployment", False, f"{name} has no work pool: no worker runs it")
                continue
            pools.add(deployment.work_pool_name)
            yield Check("deployment", True, f"{name} on work pool {deployment.work_pool_name}")
        for pool in sorted(pools):
            try:
                found = client.read_work_pool(pool)
            except ObjectNotFound:
                yield Check("work pool", False, f"{pool} not found: prefect work-pool create")
                continue
            status = getattr(found.status, "value", found.status) or "unknown"
            yield Check("work pool", True, f"{pool} ({found.type}), status {status}")


def alerts_check(config: IngestConfig, name: str) -> Check:
    """Whether the alerts can notify: the block `alert_block` names, and the
    automations `stream-ingest automations apply` makes from it."""
    from prefect.client.orchestration import get_client

    from stream_ingest.alerts import CONDITIONS, automation_name
    from stream_ingest.cli.automations import notification_block_id

    if not config.alert_block:
        return Check("alerts", True, "off (no alert_block in the config)")
    try:
        with get_client(sync_client=True) as client:
            notification_block_id(client, config.alert_block)
            missing = [
                c
                for c in CONDITIONS
                if not client.read_automations_by_name(automation_name(name, c))
            ]
    except StreamError as exc:
        return Check("alerts", False, str(exc))
    except Exception as exc:
        return Check("alerts", False, _one_line(exc))
    if missing:
        return Check(
            "alerts",
            False,
            f"{', '.join(missing)} not applied: run `stream-ingest automations apply`",
        )
    return Check("alerts", True, f"{', '.join(CONDITIONS)} -> {config.alert_block}")


def watch_check(folder: str) -> Check:
    path = Path(os.path.abspath(folder))
    if not path.is_dir():
        return Check("watch folder", False, f"{path} does not exist or is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        return Check("watch folder", False, f"{path} is not readable by this user")
    return Check("watch folder", True, f"{path} readable")


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")
