"""MkDocs hooks (mkdocs.yml `hooks:`): the parts of the docs that the code already
says, generated from the code at every build so that they cannot drift from it.

A page asks for a generated part with a marker on a line of its own:

    <!-- generated: config-options -->   every field of the IngestConfig block
    <!-- generated: seed-settings -->    the STREAM_INGEST_* variables that seed the other blocks
    <!-- generated: object-options -->   the stream-bucket block's options of every object
    <!-- generated: state-diagram -->    stream_ingest/states.py's statuses and transitions
    <!-- generated: cli-commands -->     every `stream-ingest` command, its arguments and options
    <!-- generated: streams-watch -->    docs/img/streams-watch.txt, a terminal capture of `streams watch`

An unknown marker stops the build. tests/test_docs.py renders the pages through
`on_page_markdown` and checks that nothing is missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)

# Where `stream-ingest blocks register` saves each seed setting that is not an option
# of the IngestConfig block itself (stream_ingest/blocks/registration.py: build_config). A setting
# missing here stops the build: a new one must say where it goes.
SEED_TARGETS = {
    "config_block": "the name of every block it saves; the one variable every component reads",
    "redis_url": "`redis-database/NAME` (host, port, db, password; or a Sentinel URL)",
    "redis_namespace": "`checkpoint-store/NAME`: `namespace`",
    "s3_bucket": "`stream-bucket/NAME`: `bucket_name`",
    "s3_endpoint_url": "`stream-bucket/NAME`: the credentials' `endpoint_url` (unset: AWS)",
    "aws_access_key_id": "`stream-bucket/NAME`: credentials (unset: boto3's default chain)",
    "aws_secret_access_key": "`stream-bucket/NAME`: credentials (a secret value)",
    "aws_region": "`stream-bucket/NAME`: the credentials' `region_name`",
    "s3_payload_signing": "`stream-bucket/NAME`: false adds `s3.payload_signing_enabled: "
    "false` to the credentials' client `config` (see below)",
}

# Why a stream moves, for the diagram's arrows; a transition without a reason here is
# still drawn (the code is the truth), only unlabelled.
REASONS = {
    ("detected", "uploading"): "open-upload",
    ("uploading", "finalizing"): "the recording ended",
    ("finalizing", "uploading"): "the file changed",
    ("finalizing", "completed"): "conditional complete, size and ETag checked",
    ("completed", "uploading"): "a revision (the file grew or was patched)",
    ("failed", "uploading"): "rerun, from the checkpoint",
    ("failed", "salvaged"): "streams salvage",
    ("failed", "aborted"): "source gone, or streams abort",
}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(value: object) -> str:
    if isinstance(value, tuple | list):
        return "`" + ",".join(str(v) for v in value) + "`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        value = value.value
    if value is None:
        return "unset"
    if hasattr(value, "get_secret_value"):
        return "`" + value.get_secret_value() + "`"
    if isinstance(value, str):
        return f"`{value}`" if value else "`''`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def _type(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" if a else "`''`" for a in args)
    if origin is dict:  # the object options' tags, metadata and types
        return f"map of {_type(args[0])} to {_type(args[1])}"
    if origin is tuple:  # the lists (video_extensions, ignore_patterns)
        return f"list of {_type(args[0])} (comma-separated in the variable)"
    return getattr(annotation, "__name__", None) or str(annotation)


def _limits(field: Any) -> str:
    limits = []
    for meta in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                limits.append(f"{sign} {getattr(meta, attr):g}")
    return f" ({', '.join(limits)})" if limits else ""


def config_options() -> str:
    """One row per field of the IngestConfig block, in the model's order."""
    from stream_ingest.blocks.config import IngestConfig
    from stream_ingest.settings import ENV_PREFIX, Settings

    rows = [
        "| field | type | default | seeded from | what it does |",
        "|---|---|---|---|---|",
    ]
    for name, field in IngestConfig.model_fields.items():
        if name in Settings.model_fields:
            default = _default(field.default)
            seed = f"`{ENV_PREFIX}{name.upper()}`"
        else:  # a reference to another block, saved by `blocks register`
            default = f"block `{_type(field.annotation)}`"
            seed = "`blocks register`"
        rows.append(
            f"| `{name}` | {_cell(_type(field.annotation))}{_limits(field)} | {default} | "
            f"{seed} | {_cell(field.description or '')} |"
        )
    return "\n".join(rows)


def seed_settings() -> str:
    """The seed settings that are not options of the IngestConfig block."""
    from stream_ingest.blocks.config import IngestConfig
    from stream_ingest.settings import ENV_PREFIX, Settings

    rows = ["| variable | default | saved into |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if name in IngestConfig.model_fields:
            continue
        if name not in SEED_TARGETS:
            raise ValueError(f"scripts/docs_hooks.py: say where the setting {name} is saved")
        secret = "SecretStr" in str(field.annotation) and name != "redis_url"
        default = "unset" if secret and field.default is None else _default(field.default)
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {default} | {SEED_TARGETS[name]} |")
    return "\n".join(rows)


def object_options() -> str:
    """One row per object option of the stream-bucket block (stream_ingest/objects.py)."""
    from stream_ingest.objects import ObjectOptions

    rows = ["| field | type | default | what it does |", "|---|---|---|---|"]
    for name, field in ObjectOptions.model_fields.items():
        default = "none" if field.default_factory else _default(field.default)
        rows.append(
            f"| `{name}` | {_cell(_type(field.annotation))} | {default} | "
            f"{_cell(field.description or '')} |"
        )
    return "\n".join(rows)


def state_diagram() -> str:
    """A Mermaid state diagram of every legal transition between two statuses."""
    from stream_ingest import states

    # Mermaid ends a label at a colon: the reasons above have none.
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> detected: the sensor claims a file"]
    again = []
    for current, targets in states._ALLOWED.items():
        for target in sorted(targets, key=list(states.Status).index):
            if target == current:
                again.append(current.value)
                continue
            reason = REASONS.get((current.value, target.value))
            label = f": {reason}" if reason else ""
            lines.append(f"    {current.value} --> {target.value}{label}")
    lines += [f"    {s.value} --> [*]" for s in states.Status if not states._ALLOWED[s]]
    lines.append("```")
    if again:
        lines.append("")
        lines.append(
            "A status may also be written again unchanged (with other fields): "
            + ", ".join(f"`{s}`" for s in again)
            + "."
        )
    lines.append("")
    lines.append(
        "Terminal: "
        + ", ".join(f"`{s.value}`" for s in states.Status if s in states.TERMINAL)
        + ". Active (in `streams:active`, the janitor's work list): "
        + ", ".join(f"`{s.value}`" for s in states.Status if s in states.ACTIVE)
        + "."
    )
    return "\n".join(lines)


def cli_commands() -> str:
    """Every command of the typer app, as `stream-ingest --help` would list it."""
    import typer

    from stream_ingest.cli.main import app

    root = typer.main.get_command(app)
    out: list[str] = []

    # typer carries its own copy of click: its classes, not click's, are duck-typed here.
    def walk(command: Any, path: list[str], ctx: Any) -> None:
        ctx = command.context_class(command, info_name=path[-1], parent=ctx)
        if hasattr(command, "list_commands"):
            if len(path) == 1:
                out.extend(_params(command, ctx, "Global options (before the command)"))
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name], ctx)
            return
        usage = " ".join([*path, *command.collect_usage_pieces(ctx)])
        out.append(f"### `{' '.join(path)}`\n")
        out.append(f"```\n{usage}\n```\n")
        out.append(_help_text(command.help or "") + "\n")
        out.extend(_params(command, ctx, None))

    walk(root, ["stream-ingest"], None)
    return "\n".join(out)


def _help_text(text: str) -> str:
    return " ".join(text.split())


def _params(command: Any, ctx: Any, title: str | None) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        if param.name == "help":
            continue
        record = param.get_help_record(ctx)
        names, help_text = record if record else (param.human_readable_name, "")
        kind = "argument" if param.param_type_name == "argument" else "option"
        # A choice's `<a|b>` would split the table's cell.
        names = names.replace("|", " / ")
        rows.append(f"| `{names}` | {kind} | {_cell(_help_text(help_text))} |")
    if not rows:
        return []
    head = [f"**{title}**\n"] if title else []
    return [*head, "| name | kind | help |", "|---|---|---|", *rows, ""]


WATCH_CAPTURE = Path(__file__).resolve().parents[1] / "docs" / "img" / "streams-watch.txt"


def streams_watch() -> str:
    """The capture (tmux capture-pane) as a fenced block: one file, shown as taken."""
    return "```text\n" + WATCH_CAPTURE.read_text().rstrip() + "\n```"


GENERATORS: dict[str, Callable[[], str]] = {
    "config-options": config_options,
    "seed-settings": seed_settings,
    "object-options": object_options,
    "state-diagram": state_diagram,
    "cli-commands": cli_commands,
    "streams-watch": streams_watch,
}


def render(markdown: str) -> str:
    """The page with each marker replaced by what it asks for."""

    def generate(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated part {name!r}; known: {sorted(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(generate, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return render(markdown)
