"""Bulk scan registration on a real PostgreSQL (COPY) and on SQLite (executemany) alike."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from producer import jobs
from schema import results
from schema.db import session_factory, upgrade
from schema.models import Scan

# Keys that COPY's text format must escape, plus ordinary and non-ASCII ones.
AWKWARD = ["a\tb.dcm", "line\nbreak.dcm", "back\\slash.dcm", "cr\r.dcm", "\\N", "ü/ct 1.png"]


@pytest.fixture(params=["postgresql", "sqlite"])
def sessions(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
    else:
        url = f"sqlite:///{tmp_path}/results.db"
    upgrade(url)
    return session_factory(url)


def test_add_scans_returns_only_new_keys_and_keeps_every_field(sessions):
    rows = [
        {"object_key": k, "size": i * 10 or None, "etag": f"e{i}" if i % 2 else None}
        for i, k in enumerate(AWKWARD)
    ]
    rows[1]["true_label"] = 1
    rows[2]["true_label"] = False
    with sessions.begin() as session:
        job, _ = jobs.open_job(session, "copy", "s3://b/p", {}, "v")
        job_id = job.id
        first = results.add_scans(session, job_id, rows + rows[:2])  # a key listed twice
        # A second call in the same transaction sees only what it sends.
        second = results.add_scans(session, job_id, [*rows[:3], {"object_key": "new.dcm"}])
    assert sorted(first) == sorted(AWKWARD)
    assert second == ["new.dcm"]
    with sessions() as session:
        stored = {
            s.object_key: (s.size, s.etag, s.true_label)
            for s in session.scalars(select(Scan).where(Scan.job_id == job_id))
        }
    expected = {r["object_key"]: (r["size"], r["etag"], r.get("true_label")) for r in rows}
    expected[AWKWARD[2]] = (20, None, 0)
    assert stored == {**expected, "new.dcm": (None, None, None)}
