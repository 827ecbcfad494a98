"""The Celery task. Thin: validate the arguments, run the pipeline, return a small summary.

Delivery is at least once (``acks_late`` + ``task_reject_on_worker_lost``); what a delivery
does (score, split, give an image up as ``poison``) is decided in ``workers.delivery``. Bad
input is never retried; transient errors are, with backoff, until ``gave_up``.
"""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any

from celery import Task
from celery.signals import worker_init, worker_process_init
from sqlalchemy.exc import InterfaceError, OperationalError

import workers.metrics  # noqa: F401  (connects the Prometheus signal handlers)
from workers import delivery
from workers.celery_app import SCORE_BATCH, app
from workers.pipeline import TransientBatchError, process_batch, record_failures, undone_keys
from workers.runtime import Runtime, get_runtime, reset_after_fork
from workers.verdicts import finalise

log = logging.getLogger(__name__)


@worker_init.connect
def _preflight(**_: Any) -> None:
    """In the parent, before forking: refuse to consume if the model file is unusable.

    Reads the .keras file as a zip (no TensorFlow in this process)."""
    from hemoscan.settings import get_settings
    from workers.runtime import check_model_file

    settings = get_settings()
    try:
        check_model_file(settings.model_path)
        settings.effective_pseudonym_key()  # distributed: required, the same on every node
    except Exception as exc:
        log.critical("refusing to consume: %s", exc)
        raise SystemExit(f"hemoscan worker: refusing to consume: {exc}") from None


@worker_process_init.connect
def _load_model_in_child(**_: Any) -> None:
    # Each pool process loads its own model once, right after the fork, so the first batch
    # does not pay for it and the parent never initialises TensorFlow.
    reset_after_fork()
    get_runtime()


@lru_cache(maxsize=1)
def _redis(url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _deliveries(task: Task, broker_url: str | None) -> int:
    if task.request.is_eager or not broker_url or not broker_url.startswith("redis"):
        return 1  # the embedded mode runs in-process: no redelivery, nothing to count
    try:
        client = _redis(broker_url)
    except Exception:
        log.warning("could not connect to count deliveries", exc_info=True)
        client = None
    return delivery.count_delivery(client, str(task.request.id), int(task.request.retries or 0))


def _summary(job: uuid.UUID, failed: int = 0, reason: str | None = None, **extra: Any) -> dict:  # type: ignore[type-arg]
    reasons = {reason: failed} if reason and failed else {}
    return {"job": str(job), "scored": 0, "failed": failed, "reasons": reasons, **extra}


def _run(
    task: Task, rt: Runtime, job: uuid.UUID, keys: list[str], pass_number: int | None
) -> dict[str, Any]:
    """One delivery: score the batch, or split it, or give its one image up as poison."""
    attempt = str(task.request.id or "eager")
    settings = rt.settings
    deliveries = _deliveries(task, settings.broker_url)
    if deliveries > 1:  # started before: keep only what that start did not finish
        sent = len(keys)
        keys = undone_keys(rt, job, keys, pass_number)
        if not keys:
            return _summary(job, skipped=sent)
    decision = delivery.decide(keys, deliveries, settings.max_deliveries)
    if decision.action is delivery.Action.SPLIT:
        for part in decision.parts:
            task.app.send_task(
                SCORE_BATCH, args=[str(job), part, pass_number], queue=settings.queue
            )
        log.warning(
            "batch of %d images of job %s started %d times before (its worker died?): "
            "split in two to isolate the cause",
            len(keys),
            job,
            decision.deaths,
        )
        return _summary(job, split=True)
    if decision.action is delivery.Action.POISON:
        message = (
            f"scoring this image killed the worker process {decision.deaths} times; "
            "not retried (HEMOSCAN_MAX_DELIVERIES)"
        )
        log.error("job %s: an image killed its worker %d times: poison", job, decision.deaths)
        record_failures(
            rt,
            job,
            keys,
            pass_number,
            "poison",
            message,
            attempts=decision.deaths,
            attempt_key=attempt,
        )
        return _summary(job, len(keys), "poison", poison=True)
    return process_batch(rt, job, keys, pass_number, attempt_key=attempt)


DATABASE_ERRORS = (OperationalError, InterfaceError)


@app.task(name=SCORE_BATCH, bind=True, acks_late=True, max_retries=None)
def score_batch(
    self: Task, job_id: str, object_keys: list[str], pass_number: int | None = None
) -> dict[str, Any]:
    """Score ``object_keys`` of job ``job_id`` in pass ``pass_number`` (None: the job's current
    pass, for messages of round 1): predictions and failures land in the database.

    Whatever happens, the message ends in rows or in a retry: a task that raised would be
    acknowledged (and its images left without a row until a rerun), so a database outage at
    any step, bookkeeping included, retries with backoff instead.
    """
    if not isinstance(object_keys, list) or not all(isinstance(k, str) for k in object_keys):
        raise TypeError("object_keys must be a list of strings")
    if pass_number is not None and (not isinstance(pass_number, int) or pass_number < 1):
        raise TypeError("pass_number must be a positive integer")
    job = uuid.UUID(str(job_id))
    rt = get_runtime()
    tries = int(self.request.retries or 0) + 1
    attempt = str(self.request.id or "eager")

    def retry(keys: list[str], why: str) -> Exception:
        log.info("batch of job %s: %s; retrying", job, why)
        return self.retry(args=(job_id, keys, pass_number), countdown=delivery.backoff(tries - 1))

    try:
        try:
            summary = _run(self, rt, job, object_keys, pass_number)
            finalise(rt.sessions, job)
            return summary
        except (TransientBatchError, *DATABASE_ERRORS) as exc:
            if not isinstance(exc, TransientBatchError):
                exc = TransientBatchError(object_keys, f"database: {type(exc.orig).__name__}")
            if tries <= rt.settings.max_retries:
                raise retry(exc.keys, str(exc)) from None
            message = f"gave up after {tries} attempts: {exc.cause}"
            log.warning("batch of job %s: %s", job, message)
            record_failures(
                rt,
                job,
                exc.keys,
                pass_number,
                "gave_up",
                message,
                attempts=tries,
                attempt_key=attempt,
            )
            finalise(rt.sessions, job)
            return _summary(job, len(exc.keys), "gave_up", gave_up=True)
        except Exception as exc:
            # A bug, not bad input and not an outage: record it (retryable) rather than lose
            # the images; the log has the traceback.
            log.exception("batch of job %s failed", job)
            message = f"internal error: {type(exc).__name__} (see the worker's log)"
            record_failures(
                rt,
                job,
                object_keys,
                pass_number,
                "internal",
                message,
                attempts=1,
                attempt_key=attempt,
            )
            finalise(rt.sessions, job)
            return _summary(job, len(object_keys), "internal", error=True)
    except DATABASE_ERRORS as exc:  # recording a failure (or a poison) met an outage
        raise retry(object_keys, f"database: {type(exc.orig).__name__}") from None
