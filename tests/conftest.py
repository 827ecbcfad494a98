"""Shared fixtures: real PostgreSQL, Redis, SeaweedFS and Orthanc from scripts/services.sh.

Integration tests never mock these services. Each test session gets its own PostgreSQL
database and each test its own bucket, so runs do not see each other's rows or objects.

The ``services`` marker is not written by hand: ``pytest_collection_modifyitems`` below gives
it to every test whose fixture closure holds one of ``SERVICE_FIXTURES`` (the fixtures that
reach PostgreSQL, Redis, SeaweedFS or Orthanc; every other service fixture, such as ``pg_database``,
``s3_bucket`` or ``dist_env``, depends on one of them), so a new test cannot forget it and
``pytest -m "not services"`` runs with the services stopped. A fixture that asks for a service
fixture at run time (``request.getfixturevalue``) is invisible to the closure: mark that
parameter instead, ``pytest.param("postgresql", marks=pytest.mark.services)``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest

PG_URL = os.environ.get(
    "HEMOSCAN_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("HEMOSCAN_TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
S3_URL = os.environ.get("HEMOSCAN_TEST_S3_ENDPOINT_URL", "http://127.0.0.1:8333")
ORTHANC_URL = os.environ.get("HEMOSCAN_TEST_ORTHANC_URL", "http://127.0.0.1:8042")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "hemoscan")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "hemoscan-secret")

# The fixtures that need a running service; the ``services`` marker follows from them.
SERVICE_FIXTURES = frozenset({"pg_admin_url", "redis_url", "s3_endpoint", "orthanc"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def _require(url: str, name: str) -> None:
    parsed = urlparse(url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=2):
            return
    except OSError:
        pytest.fail(
            f"{name} is not reachable at {parsed.hostname}:{parsed.port}; "
            "start the local services with: scripts/services.sh start",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    _require(PG_URL, "PostgreSQL")
    return PG_URL


@contextmanager
def _new_pg_database(admin_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"hemoscan_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from schema.db import engine_for, forget_engines

        engine_for(url).dispose()
        forget_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database(pg_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    with _new_pg_database(pg_admin_url) as url:
        yield url


@pytest.fixture
def empty_pg_database(pg_admin_url: str) -> Iterator[str]:
    """A PostgreSQL database of this test's own, with no tables (for migration tests)."""
    with _new_pg_database(pg_admin_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    _require(REDIS_URL, "Redis")
    return REDIS_URL


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    _require(S3_URL, "SeaweedFS (S3)")
    return S3_URL


@dataclass(frozen=True)
class Pacs:
    """The local Orthanc (scripts/services.sh): its base URL, DICOMweb root and test user."""

    url: str
    user: str
    password: str

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"


@pytest.fixture(scope="session")
def orthanc() -> Pacs:
    _require(ORTHANC_URL, "Orthanc (DICOMweb)")
    return Pacs(
        ORTHANC_URL,
        os.environ.get("HEMOSCAN_TEST_ORTHANC_USER", "hemoscan"),
        os.environ.get("HEMOSCAN_TEST_ORTHANC_PASSWORD", "orthanc-test-pw"),
    )


@pytest.fixture
def s3_settings(s3_endpoint: str, tmp_path):  # type: ignore[no-untyped-def]
    from hemoscan.settings import load_settings

    return load_settings(
        s3_endpoint_url=s3_endpoint,
        data_dir=tmp_path,
        s3_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        s3_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def s3_bucket(s3_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A new, empty bucket for one test; its name is returned."""
    from hemoscan.storage import S3Store

    name = f"hs-{uuid.uuid4().hex[:12]}"
    store = S3Store(name, "", s3_settings)
    store.create_bucket()
    yield name
    # Drop the bucket: in SeaweedFS each bucket holds volumes, which are finite.
    client = store._client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=name)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A small untrained model file (64x64 input) for fast pipeline tests."""
    from tests.utils.archive import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras"))


@pytest.fixture
def base_env(tmp_path, tiny_model) -> dict[str, str]:
    """Environment for hemoscan processes: this test's data folder and the tiny model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMOSCAN_") or "_TEST_" in k}
    env.update(
        HEMOSCAN_DATA_DIR=str(tmp_path / "data"),
        HEMOSCAN_MODEL_PATH=tiny_model,
        HEMOSCAN_BATCH_SIZE="16",
        HEMOSCAN_TF_INTRA_THREADS="1",
        HEMOSCAN_TF_INTER_THREADS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def dist_env(base_env, pg_database, redis_url, s3_endpoint, s3_bucket) -> dict[str, str]:
    """Distributed mode: real Redis (a queue of this test's own), PostgreSQL and SeaweedFS."""
    from schema.db import upgrade

    upgrade(pg_database)
    env = dict(base_env)
    env.update(
        HEMOSCAN_BROKER_URL=redis_url,
        HEMOSCAN_DATABASE_URL=pg_database,
        HEMOSCAN_S3_ENDPOINT_URL=s3_endpoint,
        HEMOSCAN_OUTPUT_LOCATION=f"s3://{s3_bucket}/heatmaps",
        HEMOSCAN_QUEUE=f"hemoscan-test-{uuid.uuid4().hex[:8]}",
        HEMOSCAN_FLOWER_PASSWORD="flower-test-pw",
        HEMOSCAN_PSEUDONYM_KEY="pseudonym-test-secret-0123456789",
        HEMOSCAN_TEST_BUCKET=s3_bucket,
    )
    return env
