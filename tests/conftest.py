"""Shared fixtures: real PostgreSQL, Redis and SeaweedFS from scripts/services.sh.

Integration tests never mock these services. Each test session gets its own PostgreSQL
database and each test its own bucket, so runs do not see each other's rows or objects.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

PG_URL = os.environ.get(
    "HEMOSCAN_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("HEMOSCAN_TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
S3_URL = os.environ.get("HEMOSCAN_TEST_S3_ENDPOINT_URL", "http://127.0.0.1:8333")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "hemoscan")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "hemoscan-secret")


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


@pytest.fixture(scope="session")
def pg_database(pg_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"hemoscan_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    from schema.db import forget_engines

    forget_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    _require(REDIS_URL, "Redis")
    return REDIS_URL


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    _require(S3_URL, "SeaweedFS (S3)")
    return S3_URL


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
def s3_bucket(s3_settings) -> str:  # type: ignore[no-untyped-def]
    """A new, empty bucket for one test; its name is returned."""
    from hemoscan.storage import S3Store

    name = f"hs-{uuid.uuid4().hex[:12]}"
    S3Store(name, "", s3_settings).create_bucket()
    return name
