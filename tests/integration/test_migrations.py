"""Every migration up and down on a real PostgreSQL database and on SQLite, and no drift."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from schema.db import alembic_config, current_revision, downgrade, engine_for, upgrade
from schema.models import Base

TABLES = {"jobs", "scans", "predictions", "failures"}


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("pg_database")
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
    assert {"uq_scans_job_id_object_key", "uq_predictions_scan_id"} <= uniques
