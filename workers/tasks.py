"""The Celery task. Thin: validate the arguments, run the pipeline, return a small summary.

Delivery is at least once (``acks_late`` + ``task_reject_on_worker_lost``), so a batch whose
pool process died is delivered again. A batch delivered again after such a death is split in
two and re-sent, until the image that kills the worker is alone; a single image that has killed
its worker ``max_deliveries`` times gets an ``internal`` failure row instead of a fourth try.
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
from workers.celery_app import SCORE_BATCH, app
from workers.pipeline import TransientBatchError, process_batch, record_internal_failures
from workers.runtime import Runtime, get_runtime, reset_after_fork

log = logging.getLogger(__name__)

DELIVERY_TTL = 7 * 24 * 3600


@worker_init.connect
def _preflight(**_: Any) -> None:
    """In the parent, before forking: refuse to consume if the model file is unusable.

    Reads the .keras file as a zip (no TensorFlow in this process)."""
    from hemoscan.settings import get_settings
    from workers.runtime import check_model_file

    settings = get_settings()
    try:
        check_model_file(settings.model_path)
    except Exception as exc:
        log.critical("refusing to consume: %s (HEMOSCAN_MODEL_PATH)", exc)
        raise SystemExit(f"hemoscan worker: refusing to consume: {exc}") from None


@worker_process_init.connect
def _load_model_in_child(**_: Any) -> None:
    # Each pool process loads its own model once, right after the fork, so the first batch
    # does not pay for it and the parent never initialises TensorFlow.
    reset_after_fork()
    get_runtime()


def _backoff(retries: int) -> int:
    return int(min(2 ** (retries + 1), 60))


@lru_cache(maxsize=1)
def _redis(url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _delivery_count(task: Task, broker_url: str | None) -> int:
    """How many times this message (this retry of this task) has started, this one included."""
    if task.request.is_eager or not broker_url or not broker_url.startswith("redis"):
        return 1
    key = f"hemoscan:deliveries:{task.request.id}:{task.request.retries}"
    try:
        client = _redis(broker_url)
        count = int(client.incr(key))
        client.expire(key, DELIVERY_TTL)
        return count
    except Exception:  # counting is a safety net; never let it stop the scoring
        log.warning("could not count deliveries of a batch", exc_info=True)
        return 1


def _after_worker_death(
    task: Task, rt: Runtime, job: uuid.UUID, keys: list[str], deliveries: int
) -> dict[str, Any] | None:
    """Handle a batch that was delivered again because its worker process died."""
    if len(keys) > 1:
        half = len(keys) // 2
        for part in (keys[:half], keys[half:]):
            task.app.send_task(SCORE_BATCH, args=[str(job), part], queue=rt.settings.queue)
        log.warning(
            "batch of %d images of job %s was delivered %d times (its worker died): "
            "split in two to isolate the cause",
            len(keys),
            job,
            deliveries,
        )
        return {"job": str(job), "scored": 0, "failed": 0, "split": True}
    if deliveries > rt.settings.max_deliveries:
        message = (
            f"scoring this image killed the worker process {deliveries - 1} times; "
            "not retried (HEMOSCAN_MAX_DELIVERIES)"
        )
        log.error(
            "job %s: an image killed its worker %d times; recorded as failed", job, deliveries - 1
        )
        record_internal_failures(rt, job, keys, message)
        return {"job": str(job), "scored": 0, "failed": 1, "poison": True}
    return None


@app.task(name=SCORE_BATCH, bind=True, acks_late=True, max_retries=None)
def score_batch(self: Task, job_id: str, object_keys: list[str]) -> dict[str, Any]:
    """Score ``object_keys`` of job ``job_id``: predictions and failures land in the database."""
    if not isinstance(object_keys, list) or not all(isinstance(k, str) for k in object_keys):
        raise TypeError("object_keys must be a list of strings")
    job = uuid.UUID(str(job_id))
    rt = get_runtime()
    deliveries = _delivery_count(self, rt.settings.broker_url)
    if deliveries > 1:
        handled = _after_worker_death(self, rt, job, object_keys, deliveries)
        if handled is not None:
            return handled
    try:
        return process_batch(rt, job, object_keys)
    except (TransientBatchError, OperationalError, InterfaceError) as exc:
        if not isinstance(exc, TransientBatchError):
            exc = TransientBatchError(object_keys, f"database: {type(exc.orig).__name__}")
        if self.request.retries >= rt.settings.max_retries:
            message = f"gave up after {self.request.retries + 1} attempts: {exc.cause}"
            log.warning("batch of job %s: %s", job, message)
            record_internal_failures(rt, job, exc.keys, message)  # raises if the DB is down
            return {"job": str(job), "scored": 0, "failed": len(exc.keys), "gave_up": True}
        log.info("batch of job %s: %s; retrying", job, exc)
        raise self.retry(
            args=(job_id, exc.keys), countdown=_backoff(self.request.retries)
        ) from None
    except Exception as exc:
        # A bug, not bad input and not an outage: record it rather than lose the images.
        log.exception("batch of job %s failed", job)
        record_internal_failures(rt, job, object_keys, f"internal error: {type(exc).__name__}")
        return {"job": str(job), "scored": 0, "failed": len(object_keys), "error": True}
