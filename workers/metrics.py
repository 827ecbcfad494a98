"""Prometheus metrics of a worker, served on ``HEMOSCAN_METRICS_PORT`` (0: off).

A worker is a Celery prefork parent with one pool process per GPU; the batches run in the pool
processes, which Celery may replace at any time (a crash, ``task_reject_on_worker_lost``). So
the figures live in prometheus_client's *multiprocess mode*: each process writes its own
memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and the parent, which outlives its
children, serves the sum of all of them. Counters of a replaced process therefore keep
counting instead of dropping to zero, as they would with a server inside the child.
https://prometheus.github.io/client_python/multiprocess/

Set-up order matters: the directory must be chosen before any metric exists and before the
pool forks, so it happens in ``worker_init`` (parent, before the fork). In the embedded mode,
where the task runs inside ``hemoscan scan``, nothing here is switched on and every handler
returns at once.

Metrics (PromQL in deploy/README.md):
  hemoscan_images_scored_total             images with a prediction; rate() = images/second
  hemoscan_image_failures_total{reason}    images that became failure rows, by reason
  hemoscan_positives_total                 images flagged positive
  hemoscan_batch_seconds                   wall time of one score_batch task (histogram)
  hemoscan_queue_wait_seconds              producer send -> task start (histogram)
  hemoscan_batches_total{outcome}          tasks ended: success, retry or failure
  hemoscan_batch_errors_total{error}       tasks that raised, by exception class
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
)

from workers.celery_app import SCORE_BATCH

log = logging.getLogger(__name__)

# The header the producer puts on each message (producer/senders.py): its send time, epoch s.
SENT_AT_HEADER = "hemoscan_sent_at"

# A batch of 32 images takes about a second on a GPU and can take minutes on a CPU node.
BATCH_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
# Queue wait spans seconds (idle fleet) to hours (a large archive queued at once).
WAIT_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)


@dataclass
class _Metrics:
    scored: Any
    failures: Any
    positives: Any
    batch_seconds: Any
    queue_wait: Any
    batches: Any
    errors: Any


_metrics: _Metrics | None = None
_started: dict[str, float] = {}


def _prepare_directory() -> Path:
    """The multiprocess directory, emptied: stale files of an earlier run would be summed in."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="hemoscan-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def _create_metrics() -> _Metrics:
    import prometheus_client
    from prometheus_client import values

    # prometheus_client picks its value class when first imported; if something imported it
    # before the directory was set, pick again so the metrics below are multiprocess ones.
    values.ValueClass = values.get_value_class()
    c, h = prometheus_client.Counter, prometheus_client.Histogram
    return _Metrics(
        scored=c("hemoscan_images_scored", "Images scored (a prediction row written)."),
        failures=c(
            "hemoscan_image_failures", "Images recorded as failures, by reason.", ["reason"]
        ),
        positives=c("hemoscan_positives", "Images flagged positive."),
        batch_seconds=h(
            "hemoscan_batch_seconds", "Wall time of one score_batch task.", buckets=BATCH_BUCKETS
        ),
        queue_wait=h(
            "hemoscan_queue_wait_seconds",
            "Time from the producer sending a batch to a worker starting it.",
            buckets=WAIT_BUCKETS,
        ),
        batches=c("hemoscan_batches", "score_batch tasks ended, by outcome.", ["outcome"]),
        errors=c("hemoscan_batch_errors", "score_batch tasks that raised.", ["error"]),
    )


@worker_init.connect
def _setup_in_parent(**_: Any) -> None:
    global _metrics
    from hemoscan.settings import get_settings

    if not get_settings().metrics_port:
        return
    folder = _prepare_directory()
    _metrics = _create_metrics()
    log.info("worker metrics: multiprocess directory %s", folder)


@worker_ready.connect
def _serve_from_parent(**_: Any) -> None:
    """The HTTP endpoint lives in the parent: it sums every pool process's files."""
    if _metrics is None:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from hemoscan.settings import get_settings

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    port = get_settings().metrics_port
    # All interfaces: Prometheus scrapes the pod or container address.
    start_http_server(port, addr="0.0.0.0", registry=registry)
    log.info("worker metrics on :%d/metrics", port)


@worker_process_shutdown.connect
def _mark_dead(pid: int | None = None, **_: Any) -> None:
    # Counters of a dead process still count; only its live-gauge files must go.
    if _metrics is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


def _ours(task: Any) -> bool:
    return _metrics is not None and getattr(task, "name", None) == SCORE_BATCH


@task_prerun.connect
def _on_prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    if not _ours(task):
        return
    assert _metrics is not None
    _started[task_id] = time.perf_counter()
    request = task.request
    sent_at = getattr(request, SENT_AT_HEADER, None)
    # Only first deliveries: a retry's wait would include its back-off countdown.
    if isinstance(sent_at, int | float) and not request.retries:
        # Producer and worker clocks differ a little; never record a negative wait.
        _metrics.queue_wait.observe(max(0.0, time.time() - float(sent_at)))


@task_postrun.connect
def _on_postrun(
    task_id: str = "", task: Any = None, retval: Any = None, state: str | None = None, **_: Any
) -> None:
    if not _ours(task):
        return
    assert _metrics is not None
    started = _started.pop(task_id, None)
    if started is not None:
        _metrics.batch_seconds.observe(time.perf_counter() - started)
    _metrics.batches.labels(outcome=(state or "unknown").lower()).inc()
    if state == "SUCCESS" and isinstance(retval, dict):
        record_summary(retval)


def record_summary(summary: dict[str, Any]) -> None:
    """Count one batch's summary: ``{"scored", "failed", "positives", "reasons": {..}}``."""
    if _metrics is None:
        return
    _metrics.scored.inc(int(summary.get("scored", 0)))
    _metrics.positives.inc(int(summary.get("positives", 0)))
    reasons = summary.get("reasons") or {}
    unexplained = int(summary.get("failed", 0)) - sum(int(n) for n in reasons.values())
    for reason, count in reasons.items():
        _metrics.failures.labels(reason=str(reason)).inc(int(count))
    if unexplained > 0:  # every summary of workers.tasks names its reasons; older ones did not
        _metrics.failures.labels(reason="unknown").inc(unexplained)


@task_failure.connect
def _on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    if not _ours(sender):
        return
    assert _metrics is not None
    _metrics.errors.labels(error=type(exception).__name__).inc()
