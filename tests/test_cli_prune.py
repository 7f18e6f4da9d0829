"""`stream-ingest streams prune` against the test Prefect server and a private
redis-server: the dry run prints what it would do and changes nothing, the real one
does it, both with one line per action and a count, at the config block's retention."""

from __future__ import annotations

import time

import pytest

from stream_ingest.cli.main import main
from stream_ingest.records import StreamRecord
from stream_ingest.states import Status
from tests.conftest import edit_config

DAY = 86_400


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    out, _ = capsys.readouterr()
    return code, out.splitlines()


@pytest.fixture
def written_before_expiries(store, registered) -> None:
    """Streams that ended 40 and 10 days ago, a failed one, a live one: keys without
    an expiry, as they were written before retention existed."""
    for sid, status, days_ago in [
        ("s-old", Status.COMPLETED, 40),
        ("s-recent", Status.COMPLETED, 10),
        ("s-failed", Status.FAILED, 40),
        ("s-live", Status.UPLOADING, 40),
    ]:
        at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - days_ago * DAY))
        store.streams.put(
            StreamRecord(
                sid,
                identity=f"1:{days_ago}:{sid}",
                status=status,
                started_at_utc=at,
                last_activity_at_utc=at,
            )
        )
        store.redis_client.persist(store.space.meta_key(sid))


def test_a_dry_run_prints_the_actions_and_changes_nothing(
    written_before_expiries, store, capsys
) -> None:
    code, lines = _run(capsys, "streams", "prune", "--dry-run")

    assert code == 0
    assert lines[0].startswith("would delete stream s-old (completed 40.0 days ago")
    assert lines[1].startswith("would expire stream s-recent in 20.0 days")
    assert "would drop streams:all s-old" in lines
    assert "would drop streams:by-identity 1:40:s-old -> s-old" in lines
    assert lines[-1] == "4 actions in a dry run (retention 30 days): nothing changed"
    assert len(lines) == 5
    assert store.streams.get("s-old") is not None
    assert store.redis_client.pttl(store.space.meta_key("s-recent")) == -1
    assert store.identities.stream_for("1:40:s-old") == "s-old"


def test_prune_deletes_and_expires_at_the_configured_retention(
    written_before_expiries, store, capsys
) -> None:
    code, lines = _run(capsys, "streams", "prune")

    assert code == 0
    assert lines[0].startswith("delete stream s-old")
    assert lines[-1] == "4 actions (retention 30 days)"
    assert store.streams.get("s-old") is None and store.identities.stream_for("1:40:s-old") is None
    assert 19.9 * DAY < store.redis_client.ttl(store.space.meta_key("s-recent")) <= 20 * DAY
    assert [r.stream_id for r in store.streams.list()] == ["s-recent", "s-failed", "s-live"]

    _, again = _run(capsys, "streams", "prune")
    assert again == ["0 actions (retention 30 days)"]


def test_the_retention_is_the_config_blocks(written_before_expiries, store, capsys) -> None:
    edit_config(retention_days=60)

    _, lines = _run(capsys, "streams", "prune")

    assert lines[0].startswith("expire stream s-old in 20.0 days")
    assert lines[-1] == "2 actions (retention 60 days)"
    assert store.streams.get("s-old") is not None
