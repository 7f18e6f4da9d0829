"""The `stream-ingest` command line (see stream_ingest/cli/__init__.py for the commands).

Prefect, the blocks and the sensor are imported inside the commands: `dev` must set
PREFECT_API_URL before Prefect loads, and `--help` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

from stream_ingest.cli.automations import automations_app
from stream_ingest.errors import StreamError
from stream_ingest.media import MediaReport
from stream_ingest.settings import DEFAULT_CONFIG_BLOCK, SettingsError
from stream_ingest.states import Status

if TYPE_CHECKING:
    from stream_ingest.blocks.config import IngestConfig

app = typer.Typer(
    name="stream-ingest",
    help="Upload growing video recordings to S3 while they are written.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
blocks_app = typer.Typer(help="Prefect blocks.", no_args_is_help=True)
streams_app = typer.Typer(
    help="Inspect, rerun, salvage, abort and prune streams.", no_args_is_help=True
)
app.add_typer(blocks_app, name="blocks")
app.add_typer(streams_app, name="streams")
app.add_typer(automations_app, name="automations")

# Piped output keeps whole values (paths, errors) instead of folding them at 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 250)
LIST_COLUMNS = (
    "stream_id",
    "status",
    "bytes_uploaded",
    "parts_count",
    "lag_bytes",
    "lag_seconds",
    "original_path",
    "error",
)

ConfigOption = Annotated[
    str,
    typer.Option(
        "--config",
        envvar="STREAM_INGEST_CONFIG_BLOCK",
        help="Name of the IngestConfig block.",
        show_default=True,
    ),
]
WatchOption = Annotated[
    str | None,
    typer.Option("--watch", help="Folder to watch (default: watch_dir of the config block)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class _State:
    config: str = DEFAULT_CONFIG_BLOCK


state = _State()


@app.callback()
def _root(config: ConfigOption = DEFAULT_CONFIG_BLOCK) -> None:
    state.config = config


def _config() -> IngestConfig:
    from stream_ingest.blocks.config import load_config  # late: Prefect loads only when needed

    return load_config(state.config)


@app.command()
def dev(
    watch: WatchOption = None,
    state_dir: Annotated[str, typer.Option(help="Where local services keep data.")] = (
        ".stream-ingest"
    ),
    prefect_port: Annotated[int, typer.Option(help="Port of the local Prefect server.")] = 4200,
) -> None:
    """Run the whole product on this machine (Prefect, Redis, S3, worker, sensor)."""
    try:
        from stream_ingest.devstack.dev import run_dev
    except ImportError as exc:
        raise StreamError(
            f"the local stack needs the devstack extra ({exc.name} is missing): "
            "uv sync --extra devstack"
        ) from None
    raise typer.Exit(run_dev(watch, state_dir, prefect_port, state.config))


@app.command()
def sensor(
    watch: WatchOption = None,
    heartbeat: Annotated[
        Path | None,
        typer.Option(
            help="File the sensor touches every few seconds while its loop runs, for a "
            "health check to read its age."
        ),
    ] = None,
) -> None:
    """Watch the folder and trigger one flow run per new recording."""
    from stream_ingest.sensors.run import run_sensor

    run_sensor(state.config, watch, heartbeat=heartbeat)


@app.command()
def doctor(watch: WatchOption = None) -> None:
    """Check settings, S3, Redis, Prefect and the watch folder, one line each."""
    from stream_ingest.cli.doctor import run_checks

    failed = 0
    for check in run_checks(state.config, watch):
        mark = "[green]ok[/green]  " if check.ok else "[red]FAIL[/red]"
        out.print(f"{mark} {check.name:<17} {check.detail}")
        failed += not check.ok
    raise typer.Exit(1 if failed else 0)


@blocks_app.command("register")
def blocks_register() -> None:
    """Register the block types and save the blocks from STREAM_INGEST_* settings."""
    from stream_ingest.blocks.registration import register_blocks
    from stream_ingest.settings import load_settings

    overrides = {"config_block": state.config} if state.config else {}
    for line in register_blocks(load_settings(**overrides)):
        out.print(f"saved {line}")


@streams_app.command("list")
def streams_list(
    status: Annotated[Status | None, typer.Option(help="Only streams with this status.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List streams, oldest first, with their lag (bytes not in S3, age of the oldest)."""
    from stream_ingest.cli.lag_view import with_lag

    now = time.time()
    rows = [with_lag(r, now) for r in _config().checkpoints.streams.list(status)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        out.print("no streams")
    else:
        table = Table(*(c.upper() for c in LIST_COLUMNS), box=None, pad_edge=False)
        for row in rows:
            table.add_row(*(str(row.get(c, "")) for c in LIST_COLUMNS))
        out.print(table)


@streams_app.command("show")
def streams_show(stream_id: str, as_json: JsonOption = False) -> None:
    """Show one stream: path, status, object, bytes, parts, SHA-256, run, error, lag,
    and its object's revisions (sizes and SHA-256)."""
    from stream_ingest.cli.lag_view import with_lag

    store = _config().checkpoints
    record = store.streams.require(stream_id)
    revisions = store.revisions.list(stream_id)
    data = with_lag(record, time.time())
    if as_json:
        data["revisions"] = [dataclasses.asdict(r) for r in revisions]
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    for key, value in data.items():
        table.add_row(key, _media(record.media) if key == "media" else str(value))
    out.print(table)
    if revisions:
        listing = Table("revision", "bytes", "sha256", "completed", "uploaded", "copied")
        for r in revisions:
            listing.add_row(
                str(r.number),
                f"{r.size:,}",
                r.sha256,
                r.completed_at_utc,
                str(r.parts_uploaded),
                str(r.parts_copied),
            )
        out.print(listing)


def _media(text: str) -> str:
    """The media report in one line (`--json` has its fields)."""
    try:
        report = MediaReport.from_json(text)
    except (ValueError, TypeError, AttributeError):
        return text
    return f"revision {report.revision}: {report.summary()}" if report else ""


@streams_app.command("watch")
def streams_watch(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one snapshot as JSON and exit.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between refreshes.", show_default=True)
    ] = 2.0,
) -> None:
    """A live view of every active stream on every host: rate, parts, lag in bytes and
    seconds, state. Redrawn in place; q or Ctrl-C quits."""
    from stream_ingest.cli.watch import print_snapshot, run_watch

    config = _config()
    load = config.checkpoints.streams.active
    if as_json:
        print_snapshot(load, config.lag_alert_seconds)
    else:
        run_watch(load, config.lag_alert_seconds, interval, out)


@streams_app.command("rerun")
def streams_rerun(
    stream_id: Annotated[str | None, typer.Argument(help="The stream to rerun.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Rerun every failed stream.")] = False,
) -> None:
    """Rerun a stream (or every failed one) from its checkpoint, as a new flow run."""
    from stream_ingest.cli.rerun import rerun_streams

    if bool(stream_id) == failed:
        raise typer.BadParameter("give a stream id or --failed (not both)")
    reruns = rerun_streams(_config(), state.config, stream_id)
    if not reruns:
        out.print("no failed streams")
    for rerun in reruns:
        out.print(f"{rerun.stream_id}: {rerun.message}")


@streams_app.command("prune")
def streams_prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be done; change nothing.")
    ] = False,
) -> None:
    """Apply the retention (retention_days) now: delete streams that ended longer ago,
    give the others the expiry they lack, and drop index entries of streams that are
    gone. One line per action, then the count."""
    config = _config()
    retired, dropped = config.checkpoints.retention.prune(dry_run=dry_run)
    verb = "would " if dry_run else ""
    for step in retired:
        out.print(f"{verb}{step.describe()}")
    for entry in dropped:
        out.print(f"{verb}drop {entry.describe()}")
    count = len(retired) + len(dropped)
    retention = f"retention {config.retention_days:g} days"
    if dry_run:
        out.print(f"{count} actions in a dry run ({retention}): nothing changed")
    else:
        out.print(f"{count} actions ({retention})")


DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be done; change nothing.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@streams_app.command("salvage")
def streams_salvage(stream_id: str, dry_run: DryRunOption = False, yes: YesOption = False) -> None:
    """Keep what a failed stream uploaded as an object of its own, `<stem>.partial<ext>`
    beside its key (the file's first bytes, byte for byte), and mark it salvaged."""
    _end(stream_id, "salvage", dry_run, yes)


@streams_app.command("abort")
def streams_abort(stream_id: str, dry_run: DryRunOption = False, yes: YesOption = False) -> None:
    """Abort a failed stream's multipart upload, discarding its parts, and mark it aborted."""
    _end(stream_id, "abort", dry_run, yes)


def _end(stream_id: str, action: Literal["salvage", "abort"], dry_run: bool, yes: bool) -> None:
    from stream_ingest.cli.ending import end, preview

    config = _config()
    plan = preview(config, stream_id, action)
    if dry_run:
        out.print(f"would {plan.describe()}: nothing changed")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise StreamError(f"not confirmed: stdin is not a terminal (pass --yes to {action})")
        if not typer.confirm(f"{plan.describe()}?"):
            out.print("nothing changed")
            raise typer.Exit(1)
    ended = end(config, state.config, stream_id, action)
    out.print(f"stream {stream_id} {ended.how}: {ended.summary}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one line on stderr for our errors, no traceback."""
    try:
        args = list(argv) if argv is not None else None
        result = app(args=args, prog_name="stream-ingest", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return 130
    except SettingsError as exc:
        print(f"stream-ingest: {exc}", file=sys.stderr)
        return 2
    except StreamError as exc:
        print(f"stream-ingest: {exc}", file=sys.stderr)
        return 1
    except TyperException as exc:  # usage errors: typer prints them with the usage line
        show = getattr(exc, "show", None)
        if show:
            show()
        else:
            print(f"stream-ingest: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
