"""`stream-ingest`: the one console script.

  stream-ingest dev --watch DIR        the whole product on this machine
  stream-ingest sensor                 watch the folder, trigger one run per video
  stream-ingest blocks register        register block types, save blocks from settings
  stream-ingest streams list [--status S] [--json]
  stream-ingest streams show ID [--json]
  stream-ingest streams rerun ID | --failed

Prefect is imported lazily: `dev` must set PREFECT_API_URL before it loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from stream_ingest.settings import Settings, SettingsError, load_settings
from stream_ingest.states import Status

LIST_COLUMNS = ("stream_id", "status", "bytes_uploaded", "parts_count", "original_path", "error")


def _store(settings: Settings):
    from blocks.checkpoints import CheckpointStore

    return CheckpointStore.from_url(settings.redis_url.get_secret_value(), settings.redis_namespace)


def _table(rows: list[dict[str, object]], columns: Sequence[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def cmd_streams_list(args: argparse.Namespace, settings: Settings) -> int:
    status = Status(args.status) if args.status else None
    rows = [r.public() for r in _store(settings).list_streams(status)]
    print(
        json.dumps(rows, indent=2)
        if args.json
        else _table(rows, LIST_COLUMNS)
        if rows
        else "no streams"
    )
    return 0


def cmd_streams_show(args: argparse.Namespace, settings: Settings) -> int:
    record = _store(settings).get(args.id)
    if record is None:
        print(f"no stream with id {args.id}", file=sys.stderr)
        return 1
    data = record.public()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        width = max(len(k) for k in data)
        print("\n".join(f"{k.ljust(width)}  {v}" for k, v in data.items()))
    return 0


def cmd_streams_rerun(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ingest.rerun import rerun_streams

    if not args.id and not args.failed:
        print("give a stream id or --failed", file=sys.stderr)
        return 2
    lines, code = rerun_streams(settings, _store(settings), args.id, args.failed)
    print("\n".join(lines))
    return code


def cmd_blocks_register(args: argparse.Namespace, settings: Settings) -> int:
    from blocks.registration import register_blocks

    for line in register_blocks(settings):
        print(f"saved {line}")
    return 0


def cmd_sensor(args: argparse.Namespace, settings: Settings) -> int:
    from sensors.run import run_sensor

    run_sensor(settings)
    return 0


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ingest.dev import run_dev

    return run_dev(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stream-ingest", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole product locally")
    dev.add_argument("--watch", help="folder to watch (default: STREAM_INGEST_WATCH_DIR)")
    dev.add_argument("--state-dir", default=".stream-ingest", help="where local services keep data")
    dev.add_argument("--prefect-port", type=int, default=4200)
    dev.set_defaults(func=cmd_dev)

    sub.add_parser("sensor", help="watch the folder and trigger runs").set_defaults(func=cmd_sensor)

    blocks = sub.add_parser("blocks", help="Prefect blocks").add_subparsers(
        dest="what", required=True
    )
    blocks.add_parser("register", help="register types, save blocks from settings").set_defaults(
        func=cmd_blocks_register
    )

    streams = sub.add_parser("streams", help="inspect and rerun streams")
    ssub = streams.add_subparsers(dest="what", required=True)
    lst = ssub.add_parser("list", help="list streams")
    lst.add_argument("--status", choices=[s.value for s in Status])
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_streams_list)
    show = ssub.add_parser("show", help="show one stream")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_streams_show)
    rerun = ssub.add_parser("rerun", help="rerun a stream, or every failed one")
    rerun.add_argument("id", nargs="?")
    rerun.add_argument("--failed", action="store_true")
    rerun.set_defaults(func=cmd_streams_rerun)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"stream-ingest: {exc}", file=sys.stderr)
        return 2
    from stream_ingest.errors import StreamError

    try:
        return int(args.func(args, settings) or 0)
    except StreamError as exc:
        print(f"stream-ingest: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
