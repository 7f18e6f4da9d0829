"""The servers every benchmark runs against, each in its own process: a private
redis-server, an S3 server (moto's, or with `s3="ceph"` Ceph's RADOS Gateway: a
production S3 implementation, many threads in C++ where moto serves every request under
one Python lock), a Prefect server and the counting API proxy.

The benchmark process itself only drives writers, polls and runs boto3; the
stream-ingest flows run in other processes (benchmarks.host, or a real worker).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import urllib.request
import uuid
from collections import Counter
from typing import Any

import boto3
import redis

from stream_ingest.devstack.ceph import CephGateway
from stream_ingest.devstack.services import MotoServer, PrefectServer, RedisServer, Service

AWS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# On a shared 2-core machine under load a Prefect server took over 90 s to start.
STARTUP_S = 300.0
# The benchmarks' Ceph: at the uploaders' priority (the tests' runs at nice 10), and room
# in its OSD's memory for the largest `many` run's objects, both sides, several rounds.
CEPH_ENV = {"NICE": "0", "MEMSTORE_BYTES": str(16 * 1024**3)}
S3_SERVERS = ("moto", "ceph")
S3_DESCRIPTIONS = {
    "moto": "moto server, own process, in memory, HTTP on 127.0.0.1",
    "ceph": "Ceph RADOS Gateway (beast), one monitor, one OSD (memstore), HTTP on 127.0.0.1",
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_of(service: Service) -> int:
    assert service.proc is not None, f"{service.name} is not running"
    return service.proc.pid


class CountingProxy(Service):
    """benchmarks.proxy in front of the Prefect server (see that module for why)."""

    name = "proxy"

    def __init__(self, upstream: str, workdir: str) -> None:
        super().__init__(workdir=workdir)
        self.upstream = upstream

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "benchmarks.proxy",
            "--port",
            str(self.port),
            "--upstream",
            self.upstream,
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.getcwd()}

    def api_url(self, channel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{channel}/api"

    def counts(self) -> Counter[str]:
        return self._get("__counts")

    def waited(self) -> Counter[str]:
        """Seconds waited for the server by kind of call; `<kind> <status>`: 5xx answers."""
        return self._get("__waited")

    def _get(self, what: str) -> Counter[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/{what}", timeout=10) as r:
            return Counter(json.loads(r.read()))


def configure(name: str | None = None, **options: Any) -> None:
    """Save the IngestConfig block with `options` changed, as `name` (default: the
    registered one): how a benchmark varies a setting once the blocks exist."""
    from stream_ingest.blocks.config import load_config

    config = load_config()
    for field, value in options.items():
        setattr(config, field, value)
    config.save(name or config._block_document_name, overwrite=True)


class Stack:
    """Start with `with Stack() as stack:`; `env` is what flow processes need.
    Prefect runs on SQLite in the work dir, as ./dev.sh, unless `prefect_database`
    names a PostgreSQL database (benchmarks/postgres.py)."""

    def __init__(
        self,
        overrides: dict[str, str] | None = None,
        prefect_database: str | None = None,
        s3: str = "moto",
    ) -> None:
        if s3 not in S3_SERVERS:
            raise ValueError(f"unknown S3 server {s3!r}: one of {S3_SERVERS}")
        self.overrides = dict(overrides or {})
        self.workdir = tempfile.mkdtemp(prefix="si-bench-")
        self.redis = RedisServer(workdir=self._dir("redis"))
        self.moto = MotoServer(workdir=self._dir("moto"))
        self.ceph = CephGateway(CEPH_ENV) if s3 == "ceph" else None
        self.prefect = PrefectServer(workdir=self._dir("prefect"), database_url=prefect_database)
        self.proxy = CountingProxy(self.prefect.url, self._dir("proxy"))
        self.bucket = "bench"
        self.namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.watch_dir = self._dir("watch")
        self._services: list[Service] = []
        self._stats_client: redis.Redis | None = None

    def _dir(self, name: str) -> str:
        path = os.path.join(self.workdir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def __enter__(self) -> Stack:
        try:
            services = [self.redis, self.prefect, self.proxy]
            if self.ceph is None:
                services.insert(1, self.moto)
            else:
                self.ceph.start()
            for svc in services:
                svc.start(STARTUP_S)
                self._services.append(svc)
            self.s3().create_bucket(Bucket=self.bucket)
            os.environ.update(self.env())
            from stream_ingest.blocks.registration import register_blocks
            from stream_ingest.settings import load_settings

            register_blocks(load_settings())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, et: object, *exc: object) -> None:
        for svc in reversed(self._services):
            svc.stop()
        if self.ceph is not None:
            self.ceph.stop()
        if et is None:  # keep the servers' and hosts' logs when something failed
            shutil.rmtree(self.workdir, ignore_errors=True)

    def env(self, api_url: str | None = None, **overrides: str) -> dict[str, str]:
        """Prefect and STREAM_INGEST_* variables, product defaults except where the
        benchmark must differ (endpoints, credentials, namespace)."""
        env = {
            "PREFECT_HOME": self._dir("home"),
            "PREFECT_API_URL": api_url or self.prefect.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "STREAM_INGEST_WATCH_DIR": self.watch_dir,
            "STREAM_INGEST_REDIS_URL": self.redis.url,
            "STREAM_INGEST_REDIS_NAMESPACE": self.namespace,
            "STREAM_INGEST_S3_BUCKET": self.bucket,
            "STREAM_INGEST_S3_PREFIX": "bench",
            "STREAM_INGEST_S3_ENDPOINT_URL": self.s3_url,
            "STREAM_INGEST_AWS_ACCESS_KEY_ID": self.s3_keys["aws_access_key_id"],
            "STREAM_INGEST_AWS_SECRET_ACCESS_KEY": self.s3_keys["aws_secret_access_key"],
        }
        env.update(self.overrides)
        env.update(overrides)
        return env

    def s3(self, **config: Any) -> Any:
        """A plain boto3 client with boto3's defaults: what a user would write."""
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name="us-east-1",
            config=Config(**config) if config else None,
            **self.s3_keys,
        )

    @property
    def s3_url(self) -> str:
        return self.moto.url if self.ceph is None else self.ceph.server.url

    @property
    def s3_keys(self) -> dict[str, str]:
        """boto3's credential arguments for the S3 server."""
        if self.ceph is None:
            return dict(AWS)
        server = self.ceph.server
        return {"aws_access_key_id": server.access_key, "aws_secret_access_key": server.secret_key}

    def s3_cpu_seconds(self) -> float:
        """The S3 server's CPU so far: moto's process, or Ceph's monitor, OSD and gateway."""
        if self.ceph is None:
            return cpu_seconds(pid_of(self.moto))
        return sum(cpu_seconds(pid) for pid in self.ceph.pids())

    def store(self) -> Any:
        from stream_ingest.blocks.checkpoints import CheckpointStore

        return CheckpointStore.from_url(self.redis.url, self.namespace)

    def key_for(self, path: str) -> str:
        return "bench/" + os.path.relpath(path, self.watch_dir)

    def redis_stats(self) -> RedisStats:
        # One long-lived connection: its handshake is not in any delta.
        if self._stats_client is None:
            self._stats_client = redis.Redis.from_url(self.redis.url)
        return RedisStats.take(self._stats_client)

    def remove_file(self, path: str) -> None:
        """Delete a source file the way the sensor handles a delete: unbind its
        identity (the sensor's scan would release it too)."""
        from benchmarks.writer import identity_of

        identity = identity_of(path)
        store = self.store()
        sid = store.identities.stream_for(identity)
        if sid:
            store.identities.forget(identity, sid)
        os.unlink(path)

    def drop_objects(self) -> None:
        """Free moto's memory between measurements: it keeps objects in RAM, and
        deleting them did not give it back (an 8 GiB run was OOM-killed at 22 GB), so
        its state is reset and the bucket made again. Clients keep working: the
        server and its port stay. On Ceph the objects and open uploads are deleted."""
        if self.ceph is not None:
            self._empty_bucket()
            return
        req = urllib.request.Request(f"{self.moto.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=60):
            pass
        self.s3().create_bucket(Bucket=self.bucket)

    def _empty_bucket(self) -> None:
        s3 = self.s3()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
        for upload in s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []):
            s3.abort_multipart_upload(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )


class RedisStats:
    """One INFO snapshot. Round trips are the server's socket reads
    (total_reads_processed): a pipeline or a Lua script is one read, while
    commandstats also counts every command a script runs and each command in a
    pipeline. The snapshot's own INFO is subtracted from both."""

    def __init__(self, reads: int, commands: Counter[str]) -> None:
        self.reads, self.commands = reads, commands

    @classmethod
    def take(cls, r: redis.Redis) -> RedisStats:
        info = r.info("all")
        commands = Counter(
            {
                k.removeprefix("cmdstat_"): int(v["calls"])
                for k, v in info.items()
                if k.startswith("cmdstat_") and k != "cmdstat_info"
            }
        )
        return cls(int(info["total_reads_processed"]), commands)

    def since(self, before: RedisStats) -> tuple[int, Counter[str]]:
        """(round trips, commands by name) between `before` and this snapshot."""
        # -1: this snapshot's own INFO was read before the counter was reported.
        return self.reads - before.reads - 1, self.commands - before.commands
