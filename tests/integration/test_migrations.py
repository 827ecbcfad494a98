"""Every migration up and down on a real PostgreSQL database and on SQLite, and no drift."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from schema.db import alembic_config, current_revision, downgrade, engine_for, upgrade
from schema.models import Base

TABLES = {"jobs", "scans", "predictions", "failures", "series", "studies"}


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.services), "sqlite"])
def db_url(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("empty_pg_database")
    return f"sqlite:///{tmp_path}/migrations.db"


def test_every_revision_up_and_down(db_url):
    script = ScriptDirectory.from_config(alembic_config(db_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions, "no migrations found"
    for rev in revisions:  # one step at a time, up
        upgrade(db_url, rev)
        assert current_revision(db_url) == rev
    assert TABLES <= set(inspect(engine_for(db_url)).get_table_names())
    for rev in reversed(revisions):  # and back down
        downgrade(db_url, "-1")
        assert current_revision(db_url) != rev
    assert current_revision(db_url) is None
    assert not TABLES & set(inspect(engine_for(db_url)).get_table_names())
    upgrade(db_url)  # and up again from nothing


def test_models_match_migrations(db_url):
    upgrade(db_url)
    with engine_for(db_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_constraints_and_indexes_are_named(db_url):
    upgrade(db_url)
    insp = inspect(engine_for(db_url))
    indexes = {i["name"] for t in TABLES for i in insp.get_indexes(t)}
    assert {"ix_predictions_job_label_probability", "ix_failures_job_reason"} <= indexes
    uniques = {u["name"] for t in TABLES for u in insp.get_unique_constraints(t)}
    assert {
        "uq_scans_job_id_object_key",
        "uq_predictions_scan_id_slice_index",
        "uq_series_job_id_series_key",
        "uq_studies_job_id_study_key",
    } <= uniques


def test_0002_keeps_round_1_rows_and_relabels_internal_failures(db_url):
    """A database of round 1 (one job, four failures all called 'internal' or not) upgraded:
    every row is kept, at pass 1, and each 'internal' row gets the reason its message names."""
    import uuid

    from sqlalchemy import text

    upgrade(db_url, "0001")
    job = uuid.uuid4()
    messages = {
        "a": ("internal", "scoring this image killed the worker process 3 times; not retried"),
        "b": ("internal", "gave up after 6 attempts: object store: cannot get s3://b/k"),
        "c": ("internal", "decoder failed: ValueError"),
        "d": ("internal", "internal error: KeyError"),
        "e": ("unreadable", "x.dcm: truncated"),
    }
    stamp = "2026-11-30 12:00:00"
    with engine_for(db_url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, name, source_uri, state, parameters, total_objects, "
                "scored_count, failed_count, created_at) "
                "VALUES (:id, 'old', 's3://b', 'done', '{}', 5, 0, 5, :t)"
            ),
            {"id": job.hex if db_url.startswith("sqlite") else str(job), "t": stamp},
        )
        job_value = conn.scalar(text("SELECT id FROM jobs"))
        for key, (reason, message) in messages.items():
            scan = conn.execute(
                text(
                    "INSERT INTO scans (job_id, object_key, created_at) VALUES (:j, :k, :t) "
                    "RETURNING id"
                ),
                {"j": job_value, "k": key, "t": stamp},
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO failures (scan_id, job_id, reason, message, attempts, "
                    "created_at, updated_at) VALUES (:s, :j, :r, :m, 4, :t, :t)"
                ),
                {"s": scan, "j": job_value, "r": reason, "m": message, "t": stamp},
            )
    upgrade(db_url)
    with engine_for(db_url).connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.object_key, f.reason, f.attempts, f.pass_number FROM failures f "
                "JOIN scans s ON s.id = f.scan_id"
            )
        ).all()
        job_pass = conn.scalar(text("SELECT pass_number FROM jobs"))
    assert job_pass == 1
    assert {r[0]: r[1:] for r in rows} == {
        "a": ("poison", 4, 1),
        "b": ("gave_up", 4, 1),
        "c": ("unreadable", 4, 1),
        "d": ("internal", 4, 1),
        "e": ("unreadable", 4, 1),
    }
    downgrade(db_url, "0001")  # and back: the new words fold into round 1's 'internal'
    with engine_for(db_url).connect() as conn:
        reasons = sorted(conn.scalars(text("SELECT reason FROM failures")))
    assert reasons == ["internal", "internal", "internal", "unreadable", "unreadable"]


def _failure(conn, db_url: str, key: str, reason: str) -> None:
    """One job (created once), one scan ``key`` and its failure row with ``reason``."""
    import uuid

    from sqlalchemy import text

    stamp = "2026-12-02 01:00:00"
    job_value = conn.scalar(text("SELECT id FROM jobs"))
    if job_value is None:
        job = uuid.uuid4()
        conn.execute(
            text(
                "INSERT INTO jobs (id, name, source_uri, state, parameters, total_objects, "
                "scored_count, failed_count, created_at) "
                "VALUES (:id, 'j', 's3://b', 'done', '{}', 2, 0, 2, :t)"
            ),
            {"id": job.hex if db_url.startswith("sqlite") else str(job), "t": stamp},
        )
        job_value = conn.scalar(text("SELECT id FROM jobs"))
    scan = conn.execute(
        text("INSERT INTO scans (job_id, object_key, created_at) VALUES (:j, :k, :t) RETURNING id"),
        {"j": job_value, "k": key, "t": stamp},
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO failures (scan_id, job_id, reason, message, attempts, "
            "created_at, updated_at) VALUES (:s, :j, :r, 'm', 1, :t, :t)"
        ),
        {"s": scan, "j": job_value, "r": reason, "t": stamp},
    )


def test_0004_admits_not_head_and_downgrades_it_to_unsupported(db_url):
    """Before 0004 the CHECK constraint refuses 'not_head'; after it, the row is stored; a
    downgrade keeps the row as 'unsupported' (a valid file hemoscan does not score)."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    upgrade(db_url, "0003")
    with pytest.raises(IntegrityError), engine_for(db_url).begin() as conn:
        _failure(conn, db_url, "chest.dcm", "not_head")
    upgrade(db_url, "0004")
    with engine_for(db_url).begin() as conn:
        _failure(conn, db_url, "chest.dcm", "not_head")
        _failure(conn, db_url, "mr.dcm", "not_ct")
    downgrade(db_url, "0003")
    with engine_for(db_url).connect() as conn:
        rows = conn.execute(
            text("SELECT s.object_key, f.reason FROM failures f JOIN scans s ON s.id = f.scan_id")
        ).all()
    assert dict(rows) == {"chest.dcm": "unsupported", "mr.dcm": "not_ct"}


def test_0005_keeps_round_1_predictions_and_volumes_need_it(db_url):
    """A database of round 1 (a job with a prediction per object) upgraded to 0005 keeps every
    row as it was (slice 0, no series) and the job's count of objects done; after it one object
    holds several predictions (the slices of a volume), which the unique key of 0004 refuses;
    a downgrade keeps slice 0."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    upgrade(db_url, "0004")
    stamp = "2026-12-02 01:00:00"
    insert = text(
        "INSERT INTO predictions (scan_id, job_id, probability, label, threshold, model_version,"
        " timings, created_at, updated_at) VALUES (:s, :j, :p, :l, 0.5, 'v1', '{}', :t, :t)"
    )
    with engine_for(db_url).begin() as conn:
        _failure(conn, db_url, "bad.dcm", "unreadable")
        job_value = conn.scalar(text("SELECT id FROM jobs"))
        scans = {}
        for key, prob in (("a.dcm", 0.9), ("b.png", 0.1)):
            scans[key] = conn.execute(
                text("INSERT INTO scans (job_id, object_key, created_at) VALUES (:j, :k, :t) "
                     "RETURNING id"),
                {"j": job_value, "k": key, "t": stamp},
            ).scalar_one()  # fmt: skip
            conn.execute(insert, {"s": scans[key], "j": job_value, "p": prob, "l": prob > 0.5,
                                  "t": stamp})  # fmt: skip
    with pytest.raises(IntegrityError), engine_for(db_url).begin() as conn:
        conn.execute(insert, {"s": scans["a.dcm"], "j": job_value, "p": 0.2, "l": False,
                              "t": stamp})  # fmt: skip
    upgrade(db_url, "0005")
    query = text(
        "SELECT s.object_key, p.probability, p.label, p.slice_index, p.series_id, p.embedding "
        "FROM predictions p JOIN scans s ON s.id = p.scan_id ORDER BY s.object_key"
    )
    with engine_for(db_url).connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
        reasons = list(conn.scalars(text("SELECT reason FROM failures")))
        pass_done = conn.scalar(text("SELECT pass_done FROM jobs"))
    assert rows == [("a.dcm", 0.9, True, 0, None, None), ("b.png", 0.1, False, 0, None, None)]
    assert reasons == ["unreadable"]
    assert pass_done == 3, "the job's objects done in its pass: two scored, one failed"
    with engine_for(db_url).begin() as conn:  # a second slice of one object: now admitted
        conn.execute(
            text(
                "INSERT INTO predictions (scan_id, job_id, slice_index, probability, label, "
                "threshold, model_version, timings, created_at, updated_at) "
                "VALUES (:s, :j, 1, 0.3, false, 0.5, 'v1', '{}', :t, :t)"
            ),
            {"s": scans["a.dcm"], "j": job_value, "t": stamp},
        )
    downgrade(db_url, "0004")
    with engine_for(db_url).connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(
            "SELECT s.object_key, p.probability FROM predictions p JOIN scans s "
            "ON s.id = p.scan_id ORDER BY s.object_key"))]  # fmt: skip
    assert rows == [("a.dcm", 0.9), ("b.png", 0.1)]
