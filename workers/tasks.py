"""The Celery task. Thin: validate the arguments, run the pipeline, return a small summary."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from celery.signals import worker_init, worker_process_init

import workers.metrics  # noqa: F401  (connects the Prometheus signal handlers)
from workers.celery_app import SCORE_BATCH, app
from workers.pipeline import TransientBatchError, process_batch, record_internal_failures
from workers.runtime import get_runtime, reset_after_fork

log = logging.getLogger(__name__)


@worker_init.connect
def _preflight(**_: Any) -> None:
    """In the parent, before forking: refuse to consume if the model file is unusable.

    Reads the .keras file as a zip (no TensorFlow in this process)."""
    from hemoscan.settings import get_settings
    from workers.runtime import check_model_file

    check_model_file(get_settings().model_path)


@worker_process_init.connect
def _load_model_in_child(**_: Any) -> None:
    # Each pool process loads its own model once, right after the fork, so the first batch
    # does not pay for it and the parent never initialises TensorFlow.
    reset_after_fork()
    get_runtime()


def _backoff(retries: int) -> int:
    return min(2 ** (retries + 1), 60)


@app.task(name=SCORE_BATCH, bind=True, acks_late=True, max_retries=None)
def score_batch(self: Task, job_id: str, object_keys: list[str]) -> dict[str, Any]:
    """Score ``object_keys`` of job ``job_id``: predictions and failures land in the database."""
    if not isinstance(object_keys, list) or not all(isinstance(k, str) for k in object_keys):
        raise TypeError("object_keys must be a list of strings")
    job = uuid.UUID(str(job_id))
    rt = get_runtime()
    try:
        return process_batch(rt, job, object_keys)
    except TransientBatchError as exc:
        if self.request.retries >= rt.settings.max_retries:
            message = f"gave up after {self.request.retries + 1} attempts: {exc.cause}"
            log.warning("batch of job %s: %s", job, message)
            try:
                record_internal_failures(rt, job, exc.keys, message)
            except Exception:
                log.exception("could not record the failures; the batch will be redelivered")
                raise
            return {"job": str(job), "scored": 0, "failed": len(exc.keys), "gave_up": True}
        log.info("batch of job %s: %s; retrying", job, exc)
        raise self.retry(
            args=(job_id, exc.keys), countdown=_backoff(self.request.retries)
        ) from None
