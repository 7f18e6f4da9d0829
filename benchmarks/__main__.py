"""Run the benchmarks: `./bench.sh [--quick] [--only latency,throughput,overhead,many,burst,
buffers,retention,bandwidth,
recorders,segments,cpu,rename,reads]`.

Every benchmark prints one JSON line on stdout (progress goes to stderr), preceded
by one `environment` line. Servers (redis-server, moto, Prefect, the counting
proxy) are private child processes on free ports, stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

from benchmarks.common import emit, log
from benchmarks.stack import S3_DESCRIPTIONS, S3_SERVERS
from stream_ingest.devstack.services import redis_server_binary

ALL = (
    "throughput",
    "latency",
    "overhead",
    "many",
    "burst",
    "buffers",
    "retention",
    "bandwidth",
    "recorders",
    "segments",
    "cpu",
    "rename",
    "reads",
)
# Run before (and without) the stack: a process or a redis-server of their own.
NO_SERVERS = ("buffers", "retention", "reads")
# The benchmarks that run on any S3 server (`--s3`); the rest read moto's process.
CEPH_READY = {"many"}


@dataclass(frozen=True)
class Plan:
    latency_sizes_mib: tuple[int, ...]
    write_rate_mb_s: float
    throughput_mib: int
    throughput_repeat: int
    overhead_parts: int
    many_streams: tuple[int, ...]
    many_size_mib: int
    many_rate_mb_s: float
    cpu_live_mib: int
    cpu_dropped_mib: int


FULL = Plan((512, 2048, 8192), 50.0, 1024, 3, 48, (20, 50), 64, 5.0, 512, 1024)
QUICK = Plan((64,), 50.0, 256, 1, 12, (5,), 16, 5.0, 64, 128)
WORKERS = ("boto3", "stream-ingest-warm", "process")  # boto3: the floor (floor.py)


def environment(quick: bool) -> dict[str, object]:
    with open("/proc/meminfo") as fh:
        mem_kib = int(fh.readline().split()[1])
    redis_version = subprocess.run(
        [redis_server_binary(), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2:3]
    return {
        "bench": "environment",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "versions": {
            **{p: metadata.version(p) for p in ("prefect", "boto3", "moto", "redis")},
            "redis-server": "".join(redis_version).removeprefix("v="),
        },
        # The machine may be shared: a busy neighbour slows the CPU-heavier side more.
        "loadavg_1m": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma list of {ALL}")
    parser.add_argument(
        "--repeat",
        type=int,
        help="throughput, rename and many (rounds at each stream count) repeats; "
        "the median is reported",
    )
    parser.add_argument("--sizes", help="latency sizes in MiB, comma list (default: the plan's)")
    parser.add_argument("--files", type=int, help="segments: how many small files (default 100)")
    parser.add_argument("--streams", help="many: stream counts, comma list (default: the plan's)")
    parser.add_argument(
        "--workers", default=",".join(WORKERS), help=f"many: worker types, comma list of {WORKERS}"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="cpu, segments, many: py-spy samples the warm worker into DIR",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STREAM_INGEST_X=V",
        help="a setting for every flow (experiments; the defaults are what is measured)",
    )
    parser.add_argument(
        "--s3",
        choices=S3_SERVERS,
        default="moto",
        help="many: the S3 server (default moto; ceph: Ceph's RADOS Gateway, "
        "scripts/ceph-s3.sh, installed by scripts/ensure-test-tools.sh)",
    )
    parser.add_argument(
        "--prefect-database",
        metavar="URL",
        help="run Prefect on a PostgreSQL server you run, in a database of its own "
        "created there and dropped at the end (URL: postgresql+asyncpg://user@host:port/"
        "database to connect to); default: SQLite, as ./dev.sh",
    )
    args = parser.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(chosen) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {sorted(unknown)}")
    plan = QUICK if args.quick else FULL
    overrides = dict(kv.split("=", 1) for kv in args.set)
    if any(not k.startswith("STREAM_INGEST_") for k in overrides):
        parser.error("--set takes STREAM_INGEST_* variables only")
    if args.s3 != "moto" and set(chosen) - CEPH_READY:
        parser.error(f"--s3 {args.s3} runs {sorted(CEPH_READY)} only")
    # `timeout` and CI send SIGTERM: unwind like Ctrl-C so the servers are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # STREAM_INGEST_* from the caller's shell would change what is measured.
    for name in [n for n in os.environ if n.startswith(("STREAM_INGEST_", "PREFECT_"))]:
        del os.environ[name]

    from benchmarks.postgres import DatabaseUnusable, scratch_database

    database: contextlib.AbstractContextManager[tuple[str, str] | None] = contextlib.nullcontext()
    if args.prefect_database:
        database = scratch_database(args.prefect_database)
    try:
        with database as scratch:
            env_line = environment(args.quick)
            env_line["s3"] = S3_DESCRIPTIONS[args.s3]
            env_line["prefect_database"] = scratch[1] if scratch else "sqlite (the local stack's)"
            if overrides:
                env_line["overrides"] = overrides
            emit(env_line)
            return _run_all(args, plan, chosen, overrides, scratch and scratch[0])
    except DatabaseUnusable as exc:  # a bad URL or server: one line, no password
        print(f"bench: {exc}", file=sys.stderr)
        return 2


def _run_all(
    args: argparse.Namespace,
    plan: Plan,
    chosen: list[str],
    overrides: dict[str, str],
    prefect_database: str | None,
) -> int:
    from benchmarks import buffers, burst, latency, many, overhead, throughput
    from benchmarks.stack import Stack

    started = time.monotonic()

    def report(result: dict[str, object] | Iterable[dict[str, object]]) -> None:
        for line in [result] if isinstance(result, dict) else result:
            emit({**line, "loadavg_1m_after": os.getloadavg()[0]})

    counts = [int(x) for x in args.streams.split(",")] if args.streams else plan.many_streams
    workers = [w.strip() for w in args.workers.split(",") if w.strip()]
    many_runs = [(w, n) for w in workers for n in counts]  # `many` and `burst` alike

    if "buffers" in chosen:
        report(buffers.in_child())
    if "retention" in chosen:
        from benchmarks import retention

        report(retention.run())
    if "reads" in chosen:
        from benchmarks import reads

        report(reads.run())
    if all(name in NO_SERVERS for name in chosen):
        return 0
    with Stack(overrides, prefect_database, args.s3) as stack:
        log(f"servers up in {time.monotonic() - started:.0f} s (work dir {stack.workdir})")
        for name in chosen:
            if name == "throughput":
                report(
                    throughput.run(
                        stack, plan.throughput_mib, args.repeat or plan.throughput_repeat
                    )
                )
            elif name == "latency":
                sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else None
                report(
                    latency.run(stack, sizes or list(plan.latency_sizes_mib), plan.write_rate_mb_s)
                )
            elif name == "overhead":
                report(overhead.run(stack, plan.overhead_parts))
            elif name == "many":
                report(
                    many.run_all(
                        stack,
                        counts,
                        plan.many_size_mib,
                        plan.many_rate_mb_s,
                        workers,
                        args.profile,
                        args.repeat or 1,
                    )
                )
            elif name == "burst":
                for worker, streams in many_runs:
                    if worker != many.FLOOR:  # a burst is about starting runs
                        report(burst.run(stack, streams, worker))
            elif name == "recorders":
                from benchmarks import recorders

                report(recorders.run(stack, list(counts if args.streams else (8, 20))))
            elif name == "segments":
                from benchmarks import segments

                report(segments.run(stack, args.files or (20 if args.quick else 100), args.profile))
            elif name == "cpu":
                from benchmarks import cpu

                report(cpu.run(stack, plan.cpu_live_mib, plan.cpu_dropped_mib, args.profile))
            elif name == "rename":
                from benchmarks import rename

                size = 32 if args.quick else rename.SIZE_MIB
                report(rename.run(stack, size, args.repeat or (1 if args.quick else 3)))
            elif name == "bandwidth":
                from benchmarks import bandwidth

                report(bandwidth.run(stack))
    log(f"done in {time.monotonic() - started:.0f} s; load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
