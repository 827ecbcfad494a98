"""``record_batch`` on SQLite: which write wins, as rows (no services).

The same transitions on PostgreSQL too are in tests/integration/test_results.py; the rules
themselves, as pure functions, in test_rules.py. Each case is a sequence of batches on scan
"a" and the one row it must end with: (table, pass, probability or reason, attempts or writes).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from schema import results
from schema.db import session_factory, upgrade
from schema.models import Failure, Prediction
from tests.utils.results import failure, job_with_scans, prediction


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> sessionmaker[Session]:  # type: ignore[no-untyped-def]
    """One SQLite database for the module; each test makes a job of its own."""
    url = f"sqlite:///{tmp_path_factory.mktemp('results')}/results.db"
    upgrade(url)
    return session_factory(url)


# A batch: (pass, "p", probability) scores scan "a"; (pass, "f", reason, attempts, task) fails it.
Batch = tuple[Any, ...]

CASES: dict[str, tuple[list[Batch], tuple[Any, ...]]] = {
    "first score": ([(1, "p", 0.25)], ("prediction", 1, 0.25, 1)),
    "rescored in its pass: written twice": (
        [(1, "p", 0.25), (1, "p", 0.75)],
        ("prediction", 1, 0.75, 2),
    ),
    "a new pass rewrites it": ([(1, "p", 0.25), (2, "p", 0.75)], ("prediction", 2, 0.75, 2)),
    "an older pass is stale": ([(2, "p", 0.75), (1, "p", 0.25)], ("prediction", 2, 0.75, 1)),
    "a failure never replaces a score of its pass": (
        [(1, "p", 0.25), (1, "f", "gave_up", 6, "t1")],
        ("prediction", 1, 0.25, 1),
    ),
    "a failure of a newer pass replaces an older score": (
        [(1, "p", 0.25), (2, "f", "unreadable", 1, "t1")],
        ("failure", 2, "unreadable", 1),
    ),
    "a score replaces a failure, and starts its count": (
        [(1, "f", "gave_up", 6, "t1"), (1, "p", 0.25)],
        ("prediction", 1, 0.25, 1),
    ),
    "retryable never replaces permanent": (
        [(1, "f", "unreadable", 1, "t1"), (1, "f", "gave_up", 6, "t2")],
        ("failure", 1, "unreadable", 1),
    ),
    "permanent replaces retryable, adding attempts": (
        [(1, "f", "gave_up", 6, "t1"), (1, "f", "unreadable", 1, "t2")],
        ("failure", 1, "unreadable", 7),
    ),
    "a redelivered failure adds nothing": (
        [(1, "f", "gave_up", 6, "t1"), (1, "f", "gave_up", 6, "t1")],
        ("failure", 1, "gave_up", 6),
    ),
    "a new pass counts from its own attempts": (
        [(1, "f", "gave_up", 6, "t1"), (2, "f", "gave_up", 2, "t2")],
        ("failure", 2, "gave_up", 2),
    ),
}


def _row(sessions: sessionmaker[Session], scan_id: int) -> tuple[Any, ...]:
    with sessions() as session:
        p = session.scalar(select(Prediction).where(Prediction.scan_id == scan_id))
        f = session.scalar(select(Failure).where(Failure.scan_id == scan_id))
    assert p is None or f is None, "a scan holds a prediction and a failure"
    if p is not None:
        return ("prediction", p.pass_number, p.probability, p.writes)
    assert f is not None, "the scan holds no result"
    return ("failure", f.pass_number, f.reason, f.attempts)


@pytest.mark.parametrize(("batches", "expected"), CASES.values(), ids=list(CASES))
def test_record_batch_keeps_the_winning_result(sessions, request, batches, expected):
    job_id, ids = job_with_scans(sessions, request.node.name, ["a", "b"])
    a = ids["a"]
    for pass_number, kind, *rest in batches:
        if kind == "p":
            rows, fails = [prediction(a, rest[0])], []
        else:
            rows, fails = [], [failure(a, rest[0], rest[1], rest[2])]
        with sessions.begin() as session:
            results.record_batch(session, job_id, rows, fails, pass_number)
    assert _row(sessions, a) == expected


def test_the_plan_counts_what_it_did_not_write(sessions):
    job_id, ids = job_with_scans(sessions, "stale-count", ["a", "b", "c"])
    a, b, c = ids["a"], ids["b"], ids["c"]
    with sessions.begin() as session:
        results.record_batch(session, job_id, [prediction(a), prediction(b)], [], 2)
    with sessions.begin() as session:  # pass 1 arrives late: a and b are stale, c is new
        plan = results.record_batch(
            session, job_id, [prediction(a)], [failure(b, "gave_up"), failure(c, "empty")], 1
        )
    assert plan.stale == 2 and [f["scan_id"] for f in plan.failures] == [c]
    assert [_row(sessions, i) for i in (a, b, c)] == [
        ("prediction", 2, 0.25, 1),
        ("prediction", 2, 0.25, 1),
        ("failure", 1, "empty", 1),
    ]


def test_one_batch_writes_every_scan_once(sessions):
    """A batch of many scans, written in one transaction: one row each, written once."""
    keys = [f"k{i:03d}" for i in range(120)]
    job_id, ids = job_with_scans(sessions, "bulk", keys)
    with sessions.begin() as session:
        results.record_batch(
            session,
            job_id,
            [prediction(ids[k], i / 200) for i, k in enumerate(keys[:100])],
            [failure(ids[k], "unreadable") for k in keys[100:]],
        )
    rows = [_row(sessions, ids[k]) for k in keys]
    assert rows[:100] == [("prediction", 1, i / 200, 1) for i in range(100)]
    assert rows[100:] == [("failure", 1, "unreadable", 1)] * 20
