"""Which write wins: the rules that keep a redelivered or stale batch from undoing a result.

Pure functions over plain values (no database), so every transition is unit-tested. The
database side (``schema.results.record_batch``) reads the current rows of the batch's scans
under a row lock, asks ``plan_writes`` what to do, and does exactly that.

The rules (README, "Reliability"):

1. A result of an older pass never overwrites a row of a newer pass (``--rescore`` starts a
   new pass; a message sent before it may still arrive afterwards).
2. A failure never replaces a prediction of the same pass (or a newer one): a batch delivered
   again to a worker that cannot reach the store does not undo its scores.
3. A retryable failure never replaces a permanent failure of the same pass: "this file is
   corrupt" stays the answer even if a redelivery could not fetch it.
4. ``attempts`` counts real attempts: the same task recording the same failure again (a
   redelivered message) adds nothing; a new task (a rerun) adds its attempts; a new pass starts
   from its own count.
5. A retryable failure that a resume sent again (``retrying``) is pending: it does not count as
   done until a result of the new attempt is written, and the old attempt's record arriving
   late does not end the wait.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schema.models import RETRYABLE_REASONS


@dataclass(frozen=True)
class Existing:
    """The result a scan holds now: at most one prediction or one failure."""

    prediction_pass: int | None = None
    failure_pass: int | None = None
    failure_reason: str | None = None
    failure_attempts: int = 0
    failure_attempt_key: str | None = None
    failure_retrying: bool = False  # sent again by a resume: pending, not done


@dataclass
class WritePlan:
    predictions: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    stale: int = 0  # results not written because the scan holds a newer or better one
    # Scans that had no result of this pass and get one now (the job's ``pass_done`` grows).
    newly_done: int = 0


def is_retryable(reason: str) -> bool:
    return reason in RETRYABLE_REASONS


def newest_pass(current: Existing) -> int:
    return max(current.prediction_pass or 0, current.failure_pass or 0)


def is_done(pass_number: int, current: Existing) -> bool:
    """The scan counts as done in ``pass_number``: it holds a result of that pass or a newer
    one, other than a failure a resume has sent again (``retrying``)."""
    if (current.prediction_pass or 0) >= pass_number:
        return True
    return (current.failure_pass or 0) >= pass_number and not current.failure_retrying


def prediction_wins(pass_number: int, current: Existing) -> bool:
    """A prediction of ``pass_number`` replaces whatever the scan holds of this pass or older."""
    return newest_pass(current) <= pass_number


def failure_attempts(pass_number: int, new: Mapping[str, Any], current: Existing) -> int | None:
    """The ``attempts`` a new failure row gets, or None when the failure must not be written."""
    if current.prediction_pass is not None and current.prediction_pass >= pass_number:
        return None  # rule 2 (and rule 1)
    attempts = int(new.get("attempts", 1))
    if current.failure_pass is None or current.failure_pass < pass_number:
        return attempts  # first failure of this pass (rule 4)
    if current.failure_pass > pass_number:
        return None  # rule 1
    if is_retryable(new["reason"]) and not is_retryable(current.failure_reason or ""):
        return None  # rule 3
    if new.get("attempt_key") is not None and new.get("attempt_key") == current.failure_attempt_key:
        if current.failure_retrying:
            return None  # the attempt before the resume, delivered late: the retry decides
        return current.failure_attempts  # the same attempt, delivered again
    return current.failure_attempts + attempts


def plan_writes(
    pass_number: int,
    predictions: Sequence[dict[str, Any]],
    failures: Sequence[dict[str, Any]],
    current: Mapping[int, Existing],
) -> WritePlan:
    """Decide which of a batch's results are written; ``current`` maps scan id -> Existing.

    A scan in both lists (which the pipeline never produces) keeps its prediction.
    """
    plan = WritePlan()
    scored = set()
    for row in predictions:
        if prediction_wins(pass_number, current.get(row["scan_id"], Existing())):
            plan.predictions.append({**row, "pass_number": pass_number})
            scored.add(row["scan_id"])
        else:
            plan.stale += 1
    for row in failures:
        if row["scan_id"] in scored:
            continue
        attempts = failure_attempts(pass_number, row, current.get(row["scan_id"], Existing()))
        if attempts is None:
            plan.stale += 1
            continue
        plan.failures.append({**row, "attempts": attempts, "pass_number": pass_number})
    written = {row["scan_id"] for row in (*plan.predictions, *plan.failures)}
    plan.newly_done = sum(
        1 for sid in written if not is_done(pass_number, current.get(sid, Existing()))
    )
    return plan
