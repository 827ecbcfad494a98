"""Fixtures for the fault tests: the injector on PYTHONPATH, archives, and database checks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from hemoscan.settings import load_settings
from hemoscan.storage import open_store
from schema.models import Failure, Job, Prediction, Scan
from tests.utils.archive import make_phantoms, upload_archive

INJECTOR = Path(__file__).resolve().parent / "injector"


@pytest.fixture
def fault_env(dist_env) -> dict[str, str]:
    env = dict(dist_env)
    env["PYTHONPATH"] = str(INJECTOR)
    return env


@pytest.fixture
def archive(dist_env, tmp_path):  # type: ignore[no-untyped-def]
    """A function that puts N phantoms (and optionally the bad objects) in the test bucket."""
    settings = load_settings(s3_endpoint_url=dist_env["HEMOSCAN_S3_ENDPOINT_URL"])

    def make(count: int, bad: bool = False, prefix: str = "archive") -> tuple[str, list[str]]:
        source = f"s3://{dist_env['HEMOSCAN_TEST_BUCKET']}/{prefix}"
        files = make_phantoms(tmp_path / f"phantoms-{prefix}", count)
        upload_archive(open_store(source, settings), files, bad=bad)
        return source, [f"ct/{p.name}" for p in files]

    return make


class Db:
    """Read-only checks on the job's rows, straight from PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def job_id(self, name: str) -> uuid.UUID | None:
        with self.engine.connect() as conn:
            return conn.scalar(select(Job.id).where(Job.name == name))

    def predictions(self, name: str) -> list[str]:
        """Object keys with a prediction (a key twice would be a duplicate row)."""
        with self.engine.connect() as conn:
            return list(
                conn.scalars(
                    select(Scan.object_key)
                    .join(Prediction, Prediction.scan_id == Scan.id)
                    .join(Job, Job.id == Scan.job_id)
                    .where(Job.name == name)
                )
            )

    def _prediction_column(self, name: str, column: Any) -> dict[str, Any]:
        """Object key -> ``column`` of its prediction row, for the job called ``name``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Scan.object_key, column)
                .join(Prediction, Prediction.scan_id == Scan.id)
                .join(Job, Job.id == Scan.job_id)
                .where(Job.name == name)
            ).all()
        return {key: value for key, value in rows}

    def updated_at(self, name: str) -> dict[str, object]:
        """Object key -> when its prediction row was last written (the database's clock)."""
        return self._prediction_column(name, Prediction.updated_at)

    def writes(self, name: str) -> dict[str, int]:
        """Object key -> how many times its prediction row was written (1: scored once)."""
        return self._prediction_column(name, Prediction.writes)

    def flagged(self, name: str) -> int:
        """How many of the job's prediction rows are flagged positive."""
        return sum(bool(v) for v in self._prediction_column(name, Prediction.label).values())

    def passes(self, name: str) -> dict[str, int]:
        """Object key -> the pass its prediction was computed in."""
        return self._prediction_column(name, Prediction.pass_number)

    def failures(self, name: str) -> dict[str, tuple[str, str, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Scan.object_key, Failure.reason, Failure.message, Failure.attempts)
                .join(Failure, Failure.scan_id == Scan.id)
                .join(Job, Job.id == Scan.job_id)
                .where(Job.name == name)
            ).all()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def count_scans(self, name: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count())
                    .select_from(Scan)
                    .join(Job, Job.id == Scan.job_id)
                    .where(Job.name == name)
                )
                or 0
            )

    def wait_done(self, name: str, expected: int, timeout: float = 180) -> None:
        """Poll until ``expected`` scans of the job have a prediction or a failure."""
        self._wait(name, expected, timeout, lambda: self.predictions(name) + [*self.failures(name)])

    def wait_scored(self, name: str, expected: int, timeout: float = 180) -> None:
        """Poll until ``expected`` scans of the job have a prediction."""
        self._wait(name, expected, timeout, lambda: self.predictions(name))

    def _wait(self, name: str, expected: int, timeout: float, rows: Any) -> None:
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            try:
                done = len(rows())
            except Exception:
                done = -1  # the database may be the thing under test
            if done >= expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"job {name}: {done} of {expected} done after {timeout}s")


@pytest.fixture
def db(dist_env):  # type: ignore[no-untyped-def]
    handle = Db(dist_env["HEMOSCAN_DATABASE_URL"])
    yield handle
    handle.engine.dispose()


def wait_for_file(path: Path, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear in {timeout}s")


def hold_env(env: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], Path]:
    """``env`` with the injector's HOLD hook on (batches of 8) and the folder it watches."""
    hold = tmp_path / "hold"
    hold.mkdir()
    return {**env, "HEMOSCAN_FAULT_HOLD": str(hold), "HEMOSCAN_BATCH_SIZE": "8"}, hold


@contextmanager
def batch_held(hold: Path) -> Iterator[None]:
    """The block runs while a worker is held inside a batch (HOLD hook); then it is released."""
    wait_for_file(hold / "started")
    yield
    (hold / "release").write_text("go")
