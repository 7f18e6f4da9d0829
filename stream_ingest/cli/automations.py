"""`stream-ingest automations apply|remove`: the alerts (stream_ingest/alerts.py) as
Prefect automations on the server the config block is read from.

`apply` creates each alert or updates the one of the same name, so running it again
(after a change of `alert_block` or `stuck_after_seconds`) leaves one automation per
alert, as the config says. `remove` deletes them. Both touch only the alerts of one
config block (by name): other automations are left alone.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer
from rich.console import Console

from stream_ingest.alerts import CONDITIONS, alert_automations, automation_name, parse_block_ref
from stream_ingest.errors import ConfigurationError
from stream_ingest.settings import DEFAULT_CONFIG_BLOCK

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import BlockDocument

    from stream_ingest.blocks.config import IngestConfig

automations_app = typer.Typer(
    help="Alerts: Prefect automations that notify the config's alert_block.",
    no_args_is_help=True,
)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 250)

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Name of the IngestConfig block (default: the one `stream-ingest --config` "
        "or STREAM_INGEST_CONFIG_BLOCK names).",
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be done; change nothing.")
]


@automations_app.command("apply")
def apply_command(
    ctx: typer.Context, config: ConfigOption = None, dry_run: DryRunOption = False
) -> None:
    """Create or update the alerts (failed, stuck, salvaged, lagging) of the config
    block, each sending to its alert_block. Run it again after changing either."""
    from stream_ingest.blocks.config import load_config

    name = _config_name(ctx, config)
    for line in apply_alerts(load_config(name), name, dry_run):
        out.print(line)


@automations_app.command("remove")
def remove_command(
    ctx: typer.Context, config: ConfigOption = None, dry_run: DryRunOption = False
) -> None:
    """Delete the alerts of the config block."""
    for line in remove_alerts(_config_name(ctx, config), dry_run):
        out.print(line)


def _config_name(ctx: typer.Context, given: str | None) -> str:
    """The subcommand's --config, else the root's (stream_ingest/cli/main.py)."""
    root = ctx.find_root().params.get("config")
    return given or root or DEFAULT_CONFIG_BLOCK


def apply_alerts(cfg: IngestConfig, config_name: str, dry_run: bool = False) -> list[str]:
    """Create or update each alert of `config_name`; one line per alert."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    try:
        ref = parse_block_ref(cfg.alert_block)
    except ValueError as exc:
        raise ConfigurationError(f"ingest-config/{config_name}: {exc}") from None
    verb = "would " if dry_run else ""
    lines = []
    with get_client(sync_client=True) as client:
        block_id = notification_block_id(client, str(ref))
        bodies = alert_automations(config_name, str(block_id), cfg.stuck_after_seconds)
        for body in bodies:
            automation = AutomationCore.model_validate(body)
            existing = client.read_automations_by_name(automation.name)
            if not dry_run:
                _put(client, automation, [a.id for a in existing])
            how = "update" if existing else "create"
            lines.append(f"{verb}{how}{'' if dry_run else 'd'} {automation.name!r} -> {ref}")
    return lines


def _put(client: SyncPrefectClient, automation: Any, ids: list[UUID]) -> None:
    """Update the first automation of the name, delete any other (a copy made by hand
    or by an interrupted apply), or create it."""
    if not ids:
        client.create_automation(automation)
        return
    client.update_automation(ids[0], automation)
    for extra in ids[1:]:
        client.delete_automation(extra)


def remove_alerts(config_name: str, dry_run: bool = False) -> list[str]:
    """Delete every automation named as an alert of `config_name`; one line each."""
    from prefect.client.orchestration import get_client

    from stream_ingest.blocks.config import require_api_url

    require_api_url()
    verb = "would " if dry_run else ""
    lines = []
    with get_client(sync_client=True) as client:
        for condition in CONDITIONS:
            name = automation_name(config_name, condition)
            for automation in client.read_automations_by_name(name):
                if not dry_run:
                    client.delete_automation(automation.id)
                lines.append(f"{verb}{'remove' if dry_run else 'removed'} {name!r}")
    return lines or [f"no alerts of ingest-config/{config_name}"]


def notification_block_id(client: SyncPrefectClient, text: str) -> UUID:
    """The id of the notification block `text` names (stream_ingest.alerts.BlockRef),
    or ConfigurationError saying what is wrong with it."""
    from prefect.exceptions import ObjectNotFound

    ref = parse_block_ref(text)
    if ref.slug:
        try:
            doc = client.read_block_document_by_name(ref.name, ref.slug, include_secrets=False)
        except ObjectNotFound:
            raise ConfigurationError(
                f"alert_block {ref}: no such block; create it in the UI's Blocks page"
            ) from None
        if not _notifies(doc):
            raise ConfigurationError(
                f"alert_block {ref}: a {ref.slug} block cannot send notifications"
            )
        return doc.id
    found = [
        d
        for d in client.read_block_documents(include_secrets=False)
        if d.name == ref.name and _notifies(d)
    ]
    if not found:
        raise ConfigurationError(
            f"alert_block {ref}: no notification block has that name; create one in the "
            "UI's Blocks page (Custom Webhook, Slack Webhook, an email block...)"
        )
    if len(found) > 1:
        names = ", ".join(sorted(f"{_slug(d)}/{d.name}" for d in found))
        raise ConfigurationError(f"alert_block {ref} is ambiguous: say which, one of {names}")
    return found[0].id


def _notifies(doc: BlockDocument) -> bool:
    return "notify" in (doc.block_schema.capabilities if doc.block_schema else [])


def _slug(doc: BlockDocument) -> str:
    return doc.block_type.slug if doc.block_type else "?"
