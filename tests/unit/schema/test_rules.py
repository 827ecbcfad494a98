"""schema.rules: which write wins, for every transition a redelivery or a rescore can cause."""

from __future__ import annotations

import pytest

from schema.models import FAILURE_REASONS, PERMANENT_REASONS, RETRYABLE_REASONS
from schema.rules import Existing, failure_attempts, is_done, plan_writes, prediction_wins


def fail(reason: str = "gave_up", attempts: int = 1, key: str | None = "task-b") -> dict:
    return {
        "scan_id": 1,
        "reason": reason,
        "message": "m",
        "attempts": attempts,
        "attempt_key": key,
    }


def test_vocabulary_is_split_in_two_without_overlap():
    assert set(PERMANENT_REASONS).isdisjoint(RETRYABLE_REASONS)
    assert set(FAILURE_REASONS) == set(PERMANENT_REASONS) | set(RETRYABLE_REASONS)
    assert {"poison", "unreadable", "bad_key"} <= set(PERMANENT_REASONS)
    assert {"gave_up", "config", "internal"} == set(RETRYABLE_REASONS)
    assert all(len(r) <= 16 for r in FAILURE_REASONS), "failures.reason is String(16)"


def test_every_image_error_reason_is_stored_as_permanent():
    """The workers store ``ImageError.reason`` as is: each must pass the CHECK constraint and,
    being the file's problem, never be resent by a rerun."""
    from hybrid_model.errors import REASONS

    assert set(REASONS) <= set(PERMANENT_REASONS)


@pytest.mark.parametrize(
    ("current", "wins"),
    [
        (Existing(), True),
        (Existing(prediction_pass=2), True),  # the same pass delivered again: same rows
        (Existing(prediction_pass=1), True),  # an older pass is replaced
        (Existing(failure_pass=2, failure_reason="gave_up"), True),  # a rerun cured it
        (Existing(failure_pass=2, failure_reason="unreadable"), True),
        (Existing(prediction_pass=3), False),  # stale: the job was rescored since
        (Existing(failure_pass=3, failure_reason="missing"), False),
    ],
)
def test_prediction_of_pass_2(current, wins):
    assert prediction_wins(2, current) is wins


def test_a_failure_never_replaces_a_prediction_of_the_same_pass():
    for reason in FAILURE_REASONS:
        assert failure_attempts(2, fail(reason), Existing(prediction_pass=2)) is None
        assert failure_attempts(2, fail(reason), Existing(prediction_pass=5)) is None


def test_a_failure_of_a_newer_pass_replaces_an_older_prediction_with_its_own_count():
    assert failure_attempts(3, fail("missing"), Existing(prediction_pass=2)) == 1


def test_a_stale_failure_does_not_overwrite_a_newer_failure():
    current = Existing(failure_pass=4, failure_reason="gave_up", failure_attempts=6)
    assert failure_attempts(3, fail("unreadable"), current) is None


def test_a_retryable_failure_does_not_replace_a_permanent_one_of_the_same_pass():
    current = Existing(failure_pass=1, failure_reason="unreadable", failure_attempts=1)
    assert failure_attempts(1, fail("gave_up", 6), current) is None
    # ...but a permanent one replaces a retryable one (the rerun found out what is wrong).
    current = Existing(failure_pass=1, failure_reason="gave_up", failure_attempts=6)
    assert failure_attempts(1, fail("missing", 1, "task-c"), current) == 7


def test_attempts_count_real_attempts():
    first = Existing(
        failure_pass=1, failure_reason="gave_up", failure_attempts=6, failure_attempt_key="task-a"
    )
    # The same task's failure delivered again: the same attempts, not one more.
    assert failure_attempts(1, fail("gave_up", 6, "task-a"), first) == 6
    # A rerun (a new task) that gave up after 6 tries again: 12 attempts in all.
    assert failure_attempts(1, fail("gave_up", 6, "task-b"), first) == 12
    # A new pass counts from zero.
    assert failure_attempts(2, fail("gave_up", 6, "task-b"), first) == 6


def test_plan_writes_keeps_scores_and_counts_what_it_drops():
    preds = [{"scan_id": i, "probability": 0.5} for i in (1, 2, 3)]
    fails = [{**fail("gave_up"), "scan_id": i} for i in (4, 5)] + [{**fail(), "scan_id": 1}]
    current = {
        2: Existing(prediction_pass=9),  # stale prediction
        4: Existing(prediction_pass=1),  # the redelivery that must not undo a score
    }
    plan = plan_writes(1, preds, fails, current)
    assert [p["scan_id"] for p in plan.predictions] == [1, 3]
    assert all(p["pass_number"] == 1 for p in plan.predictions + plan.failures)
    assert [f["scan_id"] for f in plan.failures] == [5]  # 1 keeps its prediction
    assert plan.stale == 2


def test_a_failure_sent_again_by_a_resume_is_pending_until_its_retry_writes():
    """Rule 5: a retryable failure marked ``retrying`` is not done; the retry's own failure or
    prediction makes it done again (counted once more in ``newly_done``), adds its attempts,
    and the attempt from before the resume, delivered late, changes nothing."""
    before = Existing(
        failure_pass=1, failure_reason="config", failure_attempts=1, failure_attempt_key="task-a"
    )
    retrying = Existing(**{**before.__dict__, "failure_retrying": True})
    assert is_done(1, before) and not is_done(1, retrying)
    assert is_done(1, Existing(prediction_pass=1)) and not is_done(2, before)
    # The old task's record arrives late: not written, so the scan stays pending.
    assert failure_attempts(1, fail("config", 1, "task-a"), retrying) is None
    late = plan_writes(1, [], [fail("config", 1, "task-a")], {1: retrying})
    assert late.failures == [] and late.stale == 1 and late.newly_done == 0
    # The retry fails again: its attempt is added, and the scan is done once more.
    again = plan_writes(1, [], [fail("config", 1, "task-b")], {1: retrying})
    assert [f["attempts"] for f in again.failures] == [2] and again.newly_done == 1
    # The retry scores it: done once more; a scan that was not retrying adds nothing.
    scored = plan_writes(1, [{"scan_id": 1, "probability": 0.2}], [], {1: retrying})
    assert len(scored.predictions) == 1 and scored.newly_done == 1
    assert plan_writes(1, [{"scan_id": 1, "probability": 0.2}], [], {1: before}).newly_done == 0
