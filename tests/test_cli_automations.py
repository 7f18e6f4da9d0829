"""`stream-ingest automations apply|remove` against the test Prefect server: one
automation per alert however often it runs, updated to the config; the notification
block found by slug and name or by name; one clear line for a block that cannot be
used. That the alerts fire is tests/e2e/test_alerts.py's (a server that runs triggers)."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore

from stream_ingest.alerts import CONDITIONS, automation_name
from stream_ingest.cli.main import main
from tests.conftest import edit_config

WEBHOOK = CustomWebhookNotificationBlock.get_block_type_slug()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def _alerts(config: str) -> dict[str, list[Any]]:
    """The automations named as the alerts of `config`, by condition."""
    with get_client(sync_client=True) as client:
        return {c: client.read_automations_by_name(automation_name(config, c)) for c in CONDITIONS}


@pytest.fixture
def config(registered) -> str:
    return registered.config_block


@pytest.fixture
def webhook(config: str) -> str:
    """A webhook block of the test's own, named in the config block."""
    name = f"alerts-{config}"
    CustomWebhookNotificationBlock(name="alerts", url="http://127.0.0.1:9/hook").save(name)
    edit_config(alert_block=f"{WEBHOOK}/{name}", stuck_after_seconds=60)
    return name


def test_apply_twice_leaves_one_automation_per_alert_updated(config, webhook, capsys) -> None:
    code, lines, _ = _run(capsys, "automations", "apply")
    assert code == 0
    assert lines == [
        f"created '{automation_name(config, c)}' -> {WEBHOOK}/{webhook}" for c in CONDITIONS
    ]
    first = _alerts(config)
    assert all(len(found) == 1 for found in first.values())

    edit_config(stuck_after_seconds=90)
    code, lines, _ = _run(capsys, "automations", "apply")

    assert code == 0 and all(line.startswith("updated '") for line in lines)
    again = _alerts(config)
    assert {c: [a.id for a in again[c]] for c in CONDITIONS} == {
        c: [a.id for a in first[c]] for c in CONDITIONS
    }
    assert again["stuck"][0].trigger.within.total_seconds() == 90


def test_apply_leaves_one_where_there_were_two(config, webhook, capsys) -> None:
    """A copy made by hand (or by an apply that stopped halfway) is folded in."""
    assert _run(capsys, "automations", "apply")[0] == 0
    original = _alerts(config)["failed"][0]
    with get_client(sync_client=True) as client:
        client.create_automation(AutomationCore(**original.model_dump(exclude={"id"})))
    assert len(_alerts(config)["failed"]) == 2

    assert _run(capsys, "automations", "apply")[0] == 0

    assert len(_alerts(config)["failed"]) == 1


def test_a_dry_run_changes_nothing(config, webhook, capsys) -> None:
    code, lines, _ = _run(capsys, "automations", "apply", "--dry-run")

    assert code == 0 and lines[0].startswith(f"would create '{automation_name(config, 'failed')}'")
    assert all(found == [] for found in _alerts(config).values())


def test_remove_deletes_the_alerts_of_its_config_only(config, webhook, capsys) -> None:
    assert _run(capsys, "automations", "apply")[0] == 0
    assert _run(capsys, "automations", "apply", "--config", "other-site")[0] == 1  # no such block

    code, lines, _ = _run(capsys, "automations", "remove")

    assert code == 0 and lines == [f"removed '{automation_name(config, c)}'" for c in CONDITIONS]
    assert all(found == [] for found in _alerts(config).values())
    assert _run(capsys, "automations", "remove")[1] == [f"no alerts of ingest-config/{config}"]


def test_the_block_is_found_by_its_name_alone(config, webhook, capsys) -> None:
    edit_config(alert_block=webhook)

    code, lines, _ = _run(capsys, "automations", "apply")

    assert code == 0 and lines[0].endswith(f"-> {webhook}")
    assert len(_alerts(config)["lagging"]) == 1


def test_a_name_two_notification_blocks_share_must_say_which(config, webhook, capsys) -> None:
    SlackWebhook(url="https://hooks.slack.invalid/x").save(webhook)
    edit_config(alert_block=webhook)

    code, _, err = _run(capsys, "automations", "apply")

    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"alert_block {webhook} is ambiguous" in err
    assert f"{WEBHOOK}/{webhook}" in err and f"slack-webhook/{webhook}" in err


@pytest.mark.parametrize(
    ("alert_block", "says"),
    [
        ("", "alert_block is empty"),
        (f"{WEBHOOK}/no-such-block", "no such block"),
        ("no-such-block", "no notification block has that name"),
        ("ingest-config/{config}", "cannot send notifications"),
    ],
)
def test_a_block_that_cannot_be_used_is_one_line(config, capsys, alert_block, says) -> None:
    edit_config(alert_block=alert_block.format(config=config))

    code, _, err = _run(capsys, "automations", "apply")

    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert says in err
    assert all(found == [] for found in _alerts(config).values())


def _doctor_alerts(capsys: pytest.CaptureFixture[str]) -> str:
    _, lines, _ = _run(capsys, "doctor")
    return next(line for line in lines if line.split(None, 1)[1].startswith("alerts"))


def test_doctor_says_whether_the_alerts_are_applied(config, webhook, capsys) -> None:
    before = _doctor_alerts(capsys)
    assert before.startswith("FAIL") and "run `stream-ingest automations apply`" in before
    assert "failed, stuck, salvaged, lagging not applied" in before

    assert _run(capsys, "automations", "apply")[0] == 0

    after = _doctor_alerts(capsys)
    assert after.startswith("ok") and f"{WEBHOOK}/{webhook}" in after


def test_doctor_names_an_alert_block_that_does_not_exist(config, capsys) -> None:
    edit_config(alert_block="custom-webhook/nowhere")
    line = _doctor_alerts(capsys)
    assert line.startswith("FAIL") and "no such block" in line


def test_doctor_says_alerts_are_off_without_a_block(config, capsys) -> None:
    assert "off (no alert_block" in _doctor_alerts(capsys)
