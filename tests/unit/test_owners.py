from stream_ingest.owners import PENDING_STALE_SECONDS, Owner, orphaned, parse_owner, stale_claim


def test_an_owner_round_trips_through_infrastructure_pid():
    owner = Owner("rec-host-1", 4242, 987654)
    assert str(owner) == "warm:rec-host-1:4242:987654"
    assert parse_owner(str(owner)) == owner


def test_what_a_warm_worker_did_not_write_has_no_owner():
    for text in (None, "", "12345", "warm:host:12", "warm:host:x:1", "other:h:1:2"):
        assert parse_owner(text) is None


def test_only_this_host_s_runs_of_a_gone_process_are_orphans():
    alive = {(10, 100)}

    def is_alive(pid: int, start: int) -> bool:
        return (pid, start) in alive

    assert orphaned("warm:here:11:100", "here", is_alive)
    assert not orphaned("warm:here:10:100", "here", is_alive)
    # The same pid started again later is another process: its runs' owner is gone.
    assert orphaned("warm:here:10:555", "here", is_alive)
    assert not orphaned("warm:there:11:100", "here", is_alive)  # another host's to judge
    assert not orphaned("4242", "here", is_alive)  # a process worker's run


def test_a_claim_never_started_is_stale_only_long_after_and_without_an_owner():
    assert stale_claim(None, PENDING_STALE_SECONDS)
    assert stale_claim("", PENDING_STALE_SECONDS + 600)
    assert not stale_claim(None, PENDING_STALE_SECONDS - 1)  # still starting
    assert not stale_claim("warm:here:11:100", PENDING_STALE_SECONDS + 600)  # orphaned() judges
