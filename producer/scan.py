"""`hemoscan scan`: list a source, register the job's scans, and send batches of keys.

The listing is streamed and handled a chunk at a time, so memory stays flat in the size of
the archive and the first batches go out before the listing ends. Re-running a job sends only
what is not scored yet (``rescore`` sends everything again).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from hemoscan.dicomweb import DicomwebStore, Filters
from hemoscan.errors import ConfigurationError
from hemoscan.privacy import pseudonym
from hemoscan.settings import Settings
from hemoscan.storage import open_store
from hybrid_model.nifti import NIFTI_SUFFIXES
from producer.plan import ScanPlan, check_plan
from producer.senders import BrokerSender, Sender
from producer.sources import (
    SourceItem,
    iter_dicomweb,
    iter_labelled_listing,
    iter_listing,
    iter_manifest,
    read_layout_table,
)
from schema import jobs, series
from schema.models import Job
from schema.series import IMAGE_SERIES

log = logging.getLogger(__name__)

CHUNK = 2000  # listing entries registered per database round trip


@dataclass
class ScanOutcome:
    job_id: str
    job_name: str
    listed: int = 0
    sent: int = 0
    batches: int = 0
    created: bool = False
    seconds: float = 0.0
    pass_number: int = 1  # the pass these batches belong to (a new one with --rescore)


def _chunks(items: Iterable[SourceItem], size: int) -> Iterator[list[SourceItem]]:
    chunk: list[SourceItem] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_scan(
    settings: Settings,
    plan: ScanPlan,
    sender: Sender | None = None,
    on_batch=None,  # type: ignore[no-untyped-def]
    on_start=None,  # type: ignore[no-untyped-def]
) -> ScanOutcome:
    """Create or resume the job and send its pending keys in batches.

    ``on_start(job, total_pending_unknown)`` is called once the job exists; ``on_batch(n, summary)``
    after each batch is sent (with the task's summary in the embedded mode).
    """
    from hybrid_model.metadata import read_metadata  # zip + JSON only, no TensorFlow
    from schema.db import session_factory, upgrade

    started = time.perf_counter()
    source = check_plan(plan, settings)
    store = open_store(source, settings)
    batch_size = plan.batch_size or settings.batch_size
    filters = plan.filters or Filters()
    dicomweb = isinstance(store, DicomwebStore)
    name = plan.job_name or _default_name(source, plan, filters if dicomweb else None)
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        upgrade(url)  # the embedded mode needs no separate `hemoscan db upgrade`
    sessions = session_factory(url)
    model_version = read_metadata(settings.model_path).get("version")
    params: dict[str, Any] = {
        "batch_size": batch_size,
        "pattern": plan.pattern,
        "manifest": str(plan.manifest) if plan.manifest else None,
        "heatmaps": settings.heatmaps.value,
        "threshold": settings.threshold,
        "series_by": plan.series_by,
    }
    if dicomweb:
        params["qido"] = filters.params()
    legacy = _legacy_name(source, plan, dicomweb)
    try:
        job, created = _open(sessions, name, source, params, model_version, plan.rescore, legacy)
    except IntegrityError:
        # Another producer created the same job a moment ago: resume that one.
        job, created = _open(sessions, name, source, params, model_version, plan.rescore)
    job_id, job_name = str(job.id), job.name
    outcome = ScanOutcome(
        job_id=job_id, job_name=job_name, created=created, pass_number=job.pass_number
    )
    if on_start:
        on_start(outcome)

    table = read_layout_table(plan.manifest) if plan.manifest else None
    if isinstance(store, DicomwebStore):  # QIDO-RS, paged: keys are the UIDs' pseudonyms
        items = iter_dicomweb(store, filters, settings.effective_pseudonym_key())
    elif table is not None:  # RSNA / CQ500 / Kaggle label table: the listing, labelled
        items = iter_labelled_listing(store, table, plan.pattern)
    elif plan.manifest:
        items = iter_manifest(plan.manifest, plan.pattern)
    else:
        items = iter_listing(store, plan.pattern)
    own_sender = sender is None
    if sender is None:
        if not settings.distributed:
            raise ConfigurationError(
                "no broker (HEMOSCAN_BROKER_URL) and no in-process sender: the embedded mode "
                "runs through `hemoscan scan`"
            )
        sender = BrokerSender(settings)
    secret: list[bytes] = []  # read once, and only when a series is named by pseudonym

    def series_of(item: SourceItem) -> str | None:
        """The series hint of one item: its manifest series' pseudonym, else with
        ``series_by="image"`` the image's own (an ``image-`` pseudonym), else None."""
        if not item.series and plan.series_by != "image":
            return None
        if not secret:
            secret.append(settings.effective_pseudonym_key())
        if item.series:
            return pseudonym("series", f"manifest:{item.series}", secret[0])
        return pseudonym(IMAGE_SERIES, item.key, secret[0])

    pending: list[str] = []
    send = _Sends(sender, outcome, on_batch)
    running = False
    try:
        for chunk in _chunks(items, CHUNK):
            rows = [
                {
                    "object_key": it.key,
                    "size": it.size,
                    "etag": it.etag,
                    "true_label": it.true_label,
                    "series_key": series_of(it),
                    "locator": it.locator,
                }
                for it in chunk
            ]
            with sessions.begin() as session:
                fresh = _register(session, job.id, rows, plan.rescore, created)
                if not running and fresh:
                    # The row as it is now, never ``merge`` of the job read at the start:
                    # that would write its old counters (pass_done) over the workers'.
                    jobs.mark_running(session, _current(session, job.id))
                    running = True
            outcome.listed += len(chunk)
            for key in fresh:  # a volume is a batch of its own: it holds many images
                if key.lower().endswith(NIFTI_SUFFIXES):
                    send([key])
                else:
                    pending.append(key)
            while len(pending) >= batch_size:
                send(pending[:batch_size])
                del pending[:batch_size]
        if pending:
            send(pending)
        send.drain()
    finally:
        send.close()
        if own_sender:
            sender.close()
    if outcome.listed == 0:
        log.warning(
            "the source %s listed no objects%s",
            source,
            f" matching {plan.pattern!r}" if plan.pattern else "",
        )
    with sessions.begin() as session:
        from schema.results import refresh_job

        refresh_job(session, _current(session, job.id))
    # A transaction of its own, after the counters' commit: whichever of this check and the
    # last worker's check runs later sees both (schema.series.finalise).
    with sessions.begin() as session:
        series.finalise(session, job.id, exact=True)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _default_name(source: str, plan: ScanPlan, filters: Filters | None) -> str:
    """The source, with the manifest's file name or the QIDO-RS filters other than the
    default modality, and a grouping other than by folder: another selection of the same
    source, or another grouping of it, is another job."""
    grouping = "" if plan.series_by == "folder" else f"?series-by={plan.series_by}"
    if plan.manifest:
        return f"{source}#{plan.manifest.name}{grouping}"
    chosen = filters.params() if filters is not None else {}
    if not chosen or chosen == {"modality": "CT"}:
        return source + grouping
    return source + "?" + "&".join(f"{k}={v}" for k, v in sorted(chosen.items()))


def _legacy_name(source: str, plan: ScanPlan, dicomweb: bool) -> str | None:
    """The default name a folder or bucket job got from 21adc7c until the grouping option:
    the source and a stray ``?`` (no filters). Such a job is resumed under that name."""
    if plan.job_name or plan.manifest or dicomweb or plan.series_by != "folder":
        return None
    return source + "?"


def _current(session: Any, job_id: Any) -> Job:
    """The job's row read in this transaction (workers change its counters meanwhile)."""
    row = session.get(Job, job_id, populate_existing=True)
    if row is None:
        raise ConfigurationError(f"job {job_id} was deleted while it was being listed")
    return row


def _open(sessions, name, source, params, model_version, rescore: bool, legacy=None):  # type: ignore[no-untyped-def]
    """The job (created or resumed); a rescore of an existing job starts its next pass.
    ``legacy``: an older default name of the same job (``jobs.open_job``)."""
    with sessions.begin() as session:
        job, created = jobs.open_job(session, name, source, params, model_version, legacy)
        if rescore and not created:
            jobs.start_pass(session, job)
    return job, created


def _register(session, job_id, rows, rescore: bool, created: bool) -> list[str]:  # type: ignore[no-untyped-def]
    """Register a chunk of the listing; return its keys that still need scoring."""
    if created and not rescore:
        # A job this run created has nothing scored yet: exactly the keys inserted now are
        # pending (a key listed twice is sent once), so the per-key pending query is skipped.
        from schema.results import add_scans

        fresh = set(add_scans(session, job_id, rows))
        return [k for k in dict.fromkeys(r["object_key"] for r in rows) if k in fresh]
    return jobs.register_and_select(session, job_id, rows, rescore)


class _Sends:
    """Sends batches through ``sender``; to a broker on one background thread.

    The broker's round trips then overlap the next chunk's database round trips (both release
    the GIL while they wait). At most ``depth`` batches are in flight, so memory stays flat in
    the size of the listing, and a failed send surfaces at the next batch. In-process senders
    (the embedded mode) run inline: they are the scoring itself.
    """

    def __init__(self, sender: Sender, outcome: ScanOutcome, on_batch, depth: int = 64) -> None:  # type: ignore[no-untyped-def]
        self._sender, self._outcome, self._on_batch, self._depth = sender, outcome, on_batch, depth
        self._pass = outcome.pass_number
        self._pool = None if sender.in_process else ThreadPoolExecutor(1, "hemoscan-send")
        self._inflight: deque[tuple[int, Future[Any]]] = deque()

    def __call__(self, keys: list[str]) -> None:
        if self._pool is None:
            self._done(len(keys), self._sender.send(self._outcome.job_id, keys, self._pass))
            return
        future = self._pool.submit(self._sender.send, self._outcome.job_id, keys, self._pass)
        self._inflight.append((len(keys), future))
        while len(self._inflight) > self._depth or (self._inflight and self._inflight[0][1].done()):
            count, oldest = self._inflight.popleft()
            self._done(count, oldest.result())

    def _done(self, count: int, summary: Any) -> None:
        self._outcome.sent += count
        self._outcome.batches += 1
        if self._on_batch:
            self._on_batch(count, summary)

    def drain(self) -> None:
        while self._inflight:
            count, oldest = self._inflight.popleft()
            self._done(count, oldest.result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
