"""``run_scan`` resumes a job: a second run sends only what has no final result (no services).

SQLite in the test's folder and a fake ``Sender`` that records every batch it is given.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hemoscan.errors import ConfigurationError
from hemoscan.settings import Settings, load_settings
from producer.plan import ScanPlan
from producer.scan import ScanOutcome, run_scan
from schema import results
from schema.db import session_factory
from tests.utils.results import failure, prediction

KEYS = [f"ct/s{i:02d}.png" for i in range(10)]


class FakeSender:
    """A ``producer.senders.Sender`` that scores nothing: it records (job id, keys, pass)."""

    def __init__(self, in_process: bool = True) -> None:
        self.in_process = in_process
        self.sent: list[tuple[str, list[str], int]] = []
        self.closed = False

    def send(self, job_id: str, keys: Sequence[str], pass_number: int) -> dict[str, Any] | None:
        self.sent.append((job_id, list(keys), pass_number))
        return None

    def close(self) -> None:
        self.closed = True

    def keys(self) -> list[str]:
        return [key for _, batch, _ in self.sent for key in batch]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path}/hemoscan.db"
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    for key in KEYS:
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(key.encode())
    return folder


def _scan(settings: Settings, source: Path, sender: FakeSender, **plan: Any) -> ScanOutcome:
    return run_scan(
        settings, ScanPlan(str(source), job_name="resume", batch_size=4, **plan), sender
    )


def _record(settings: Settings, outcome: ScanOutcome, scored: list[str], failed: dict[str, str]):  # type: ignore[no-untyped-def]
    """What workers would have written for the job: predictions and failures by key."""
    sessions = session_factory(settings.effective_database_url)
    job_id = uuid.UUID(outcome.job_id)
    with sessions.begin() as session:
        ids = results.scan_ids(session, job_id, KEYS)
        results.record_batch(
            session,
            job_id,
            [prediction(ids[k]) for k in scored],
            [failure(ids[k], reason) for k, reason in failed.items()],
            outcome.pass_number,
        )


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "broker-like"])
def test_a_second_run_sends_only_keys_without_a_final_result(settings, source, in_process):
    first = FakeSender(in_process)
    outcome = _scan(settings, source, first)
    assert outcome.created and (outcome.listed, outcome.sent, outcome.batches) == (10, 10, 3)
    assert [(len(keys), p) for _, keys, p in first.sent] == [(4, 1), (4, 1), (2, 1)]
    assert first.keys() == KEYS and {job for job, _, _ in first.sent} == {outcome.job_id}
    assert not first.closed, "a sender the caller passed is the caller's to close"
    permanent = {KEYS[3]: "unreadable", KEYS[4]: "missing"}
    retryable = {KEYS[5]: "gave_up", KEYS[6]: "config", KEYS[7]: "internal"}
    _record(settings, outcome, KEYS[:3], {**permanent, **retryable})

    second = FakeSender(in_process)
    again = _scan(settings, source, second)
    assert again.job_id == outcome.job_id and not again.created
    assert second.keys() == [*retryable, *KEYS[8:]], "scored and permanent keys were sent again"
    assert [(len(keys), p) for _, keys, p in second.sent] == [(4, 1), (1, 1)]
    assert (again.listed, again.sent, again.batches) == (10, 5, 2)

    _record(settings, again, [*retryable, *KEYS[8:]], {})
    third = FakeSender(in_process)
    assert _scan(settings, source, third).sent == 0 and third.sent == []


def test_rescore_sends_every_key_in_the_next_pass(settings, source):
    outcome = _scan(settings, source, FakeSender())
    _record(settings, outcome, KEYS[:8], {KEYS[8]: "unreadable"})
    sender = FakeSender()
    rescored = _scan(settings, source, sender, rescore=True)
    assert rescored.pass_number == 2 and sender.keys() == KEYS
    assert {p for _, _, p in sender.sent} == {2}


def test_an_object_changed_since_it_was_scored_is_sent_again(settings, source):
    outcome = _scan(settings, source, FakeSender())
    _record(settings, outcome, KEYS, {})
    (source / KEYS[2]).write_bytes(b"new content, another size")
    sender = FakeSender()
    assert _scan(settings, source, sender).sent == 1 and sender.keys() == [KEYS[2]]


def test_a_pattern_sends_only_matching_keys(settings, source):
    sender = FakeSender()
    outcome = _scan(settings, source, sender, pattern="ct/s0[13].png")
    assert sender.keys() == [KEYS[1], KEYS[3]] and outcome.listed == 2


def test_a_volume_is_a_batch_of_its_own(settings, source):
    """A NIfTI object holds a whole series of images: the producer sends each one alone, and
    the single-slice objects in batches of the batch size as before."""
    for name in ("vol-a.nii.gz", "vol-b.NII"):
        (source / "ct" / name).write_bytes(b"volume")
    sender = FakeSender()
    _scan(settings, source, sender)
    batches = [keys for _, keys, _ in sender.sent]
    assert ["ct/vol-a.nii.gz"] in batches and ["ct/vol-b.NII"] in batches
    slices = [b for b in batches if not b[0].lower().endswith((".nii", ".nii.gz"))]
    assert sorted(k for b in slices for k in b) == KEYS
    assert max(len(b) for b in slices) == 4


class ScoringSender(FakeSender):
    """Scores each batch as it is sent, the way a worker commits it: rows and the job's
    counter of objects done in the pass, in one transaction."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.sessions = session_factory(settings.effective_database_url)

    def send(self, job_id: str, keys: Sequence[str], pass_number: int) -> dict[str, Any] | None:
        super().send(job_id, keys, pass_number)
        job = uuid.UUID(job_id)
        with self.sessions.begin() as session:
            ids = results.scan_ids(session, job, list(keys))
            plan = results.record_batch(
                session, job, [prediction(ids[k]) for k in keys], [], pass_number
            )
            results.count_done(session, job, pass_number, plan.newly_done)
        return None


def test_the_producer_never_writes_over_the_workers_counter(settings, source):
    """Batches committed while the producer lists raise ``pass_done``; the producer's own
    bookkeeping at the end (mark_running, refresh_job) must not put back the value it read
    when the job was opened, or the verdicts would never become final."""
    from schema.models import Job

    outcome = _scan(settings, source, ScoringSender(settings))
    sessions = session_factory(settings.effective_database_url)
    with sessions() as session:
        job = session.get(Job, uuid.UUID(outcome.job_id))
        assert job is not None
        assert (job.pass_done, job.total_objects) == (len(KEYS), len(KEYS))
    again = _scan(settings, source, ScoringSender(settings), rescore=True)
    with sessions() as session:
        job = session.get(Job, uuid.UUID(again.job_id))
        assert job is not None and (job.pass_number, job.pass_done) == (2, len(KEYS))


def _series_keys(settings: Settings) -> dict[str, str | None]:
    from sqlalchemy import select

    from schema.models import Scan

    sessions = session_factory(settings.effective_database_url)
    with sessions() as session:
        rows = session.execute(select(Scan.object_key, Scan.series_key)).tuples().all()
        return dict(rows)


def test_series_by_image_gives_each_image_its_own_series_pseudonym(settings, source, tmp_path):
    """``--series-by image``: every image without a series of its own gets the keyed
    ``image-`` pseudonym of its key (the same on every run, naming no key); a manifest's series
    column still wins; the default leaves the grouping to the worker (by folder)."""
    from hemoscan.privacy import pseudonym

    _scan(settings, source, FakeSender())
    assert set(_series_keys(settings).values()) == {None}

    image_settings = load_settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path}/image.db"
    )
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "key,label,series\n"
        + "".join(f"{k},,{'exam-1' if i < 2 else ''}\n" for i, k in enumerate(KEYS))
    )
    _scan(image_settings, source, FakeSender(), series_by="image", manifest=manifest)
    secret = image_settings.effective_pseudonym_key()
    assert _series_keys(image_settings) == {
        k: pseudonym("series", "manifest:exam-1", secret)
        if i < 2
        else pseudonym("image", k, secret)
        for i, k in enumerate(KEYS)
    }


def test_a_job_keeps_its_series_grouping(settings, source):
    """Scan rows keep the series they were registered with, so resuming a job with another
    ``series_by`` is refused (it would hold both groupings); the default job name of another
    grouping is another job; an unknown grouping, or one for a DICOMweb source, is refused."""
    from producer.plan import check_plan
    from schema.jobs import JobError

    _scan(settings, source, FakeSender())
    with pytest.raises(JobError, match="by folder, not by image"):
        _scan(settings, source, FakeSender(), series_by="image")
    by_folder = run_scan(settings, ScanPlan(str(source)), FakeSender())
    by_image = run_scan(settings, ScanPlan(str(source), series_by="image"), FakeSender())
    assert by_image.job_name == by_folder.job_name + "?series-by=image"
    assert by_image.job_id != by_folder.job_id
    with pytest.raises(ConfigurationError, match="series_by"):
        check_plan(ScanPlan(str(source), series_by="patient"), settings)
    with pytest.raises(ConfigurationError, match="--series-by"):
        check_plan(ScanPlan("dicomweb+http://127.0.0.1:9/dicom-web", series_by="image"), settings)


def test_a_folder_job_is_named_by_its_source_and_an_older_name_still_resumes(settings, source):
    """A folder's default job name is the folder (from 21adc7c on it carried a stray ``?``);
    a job created under that older name is resumed, not started again."""
    from schema.models import Job

    first = run_scan(settings, ScanPlan(str(source)), FakeSender())
    assert first.job_name == str(source.resolve())
    sessions = session_factory(settings.effective_database_url)
    with sessions.begin() as session:
        job = session.get(Job, uuid.UUID(first.job_id))
        assert job is not None
        job.name = first.job_name + "?"  # as that version named it
    again = run_scan(settings, ScanPlan(str(source)), FakeSender())
    assert (again.job_id, again.job_name, again.created) == (
        first.job_id,
        first.job_name + "?",
        False,
    )
