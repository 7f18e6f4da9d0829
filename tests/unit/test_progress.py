from stream_ingest.progress import PROGRESS_EVERY_SECONDS, PROGRESS_MIN_PARTS, progress_due

PART = 8 * 1024 * 1024
ENOUGH = PROGRESS_MIN_PARTS * PART


def test_the_first_update_is_due_at_once():
    assert progress_due(5.0, None, 0, 0, PART)


def test_an_update_needs_both_the_time_and_the_parts():
    later = 100.0 + PROGRESS_EVERY_SECONDS
    assert progress_due(later, 100.0, ENOUGH, 0, PART)
    assert not progress_due(later - 0.1, 100.0, ENOUGH, 0, PART)  # too soon
    assert not progress_due(later + 60, 100.0, ENOUGH - 1, 0, PART)  # a slow stream


def test_a_slow_stream_pays_at_most_one_update_per_min_parts():
    """Parts every 5 s (a loaded host): the time limit alone gives an update every
    2 parts; the parts limit keeps it to one per PROGRESS_MIN_PARTS."""
    last_at, last_bytes, updates = None, 0, 0
    for k in range(1, 41):
        now, uploaded = 5.0 * k, k * PART
        if progress_due(now, last_at, uploaded, last_bytes, PART):
            last_at, last_bytes, updates = now, uploaded, updates + 1
    assert updates <= 1 + 40 // PROGRESS_MIN_PARTS
    assert updates >= 40 // PROGRESS_MIN_PARTS - 1  # the bar still moves
