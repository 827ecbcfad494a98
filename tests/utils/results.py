"""Small factories for result rows: a job with scans, and the rows a worker's batch records."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from schema import jobs, results
from schema.db import session_factory, upgrade


def migrated_sessions(request: Any, tmp_path: Any) -> sessionmaker[Session]:
    """Sessions on a migrated database of the fixture's parameter: "postgresql" (the test
    session's ``pg_database``) or "sqlite" (a file in ``tmp_path``)."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
    else:
        url = f"sqlite:///{tmp_path}/results.db"
    upgrade(url)
    return session_factory(url)


def job_with_scans(
    sessions: sessionmaker[Session], name: str, keys: list[str]
) -> tuple[uuid.UUID, dict[str, int]]:
    """A new job called ``name`` with one scan per key; returns (job id, key -> scan id)."""
    with sessions.begin() as session:
        job, _ = jobs.open_job(session, name, "s3://b/p", {}, "v")
        results.add_scans(session, job.id, [{"object_key": k} for k in keys])
        ids = results.scan_ids(session, job.id, keys)
    return job.id, ids


def prediction(scan_id: int, probability: float = 0.25) -> dict[str, Any]:
    """A prediction row as the pipeline hands it to ``record_batch``."""
    return {
        "scan_id": scan_id,
        "probability": probability,
        "label": probability >= 0.5,
        "threshold": 0.5,
        "model_version": "v",
        "timings": {},
        "flags": [],
    }


def failure(scan_id: int, reason: str, attempts: int = 1, task: str = "t1") -> dict[str, Any]:
    """A failure row of task ``task`` (its attempt key) with ``attempts`` attempts."""
    return {
        "scan_id": scan_id,
        "reason": reason,
        "message": f"{reason} happened",
        "attempts": attempts,
        "attempt_key": task,
    }
