"""The Celery application, configured in one place from the settings.

This module must stay free of TensorFlow: the producer imports it to send batches by task
name, and the worker's parent process imports it before forking its pool (TensorFlow
initialised before a fork hangs the children). The model is loaded in each pool process by
``workers.runtime`` instead.
"""

from __future__ import annotations

from celery import Celery

from hemoscan.settings import Settings, get_settings

SCORE_BATCH = "hemoscan.score_batch"


def make_celery(settings: Settings) -> Celery:
    # No broker configured means the embedded mode: tasks run in-process through ``apply``,
    # and the in-memory transport is never actually used to carry messages.
    app = Celery("hemoscan", broker=settings.broker_url or "memory://", include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        # The database holds the results; the result backend would only duplicate them.
        task_ignore_result=True,
        result_backend=None,
        # At-least-once delivery: a batch is acknowledged only after its rows are committed,
        # and a batch whose worker process died is requeued (delivered again to any worker).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Redis redelivers an unacknowledged message after this many seconds; it must stay
        # well above the longest batch or a slow batch is scored twice (harmless, but waste).
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_default_queue=settings.queue,
        task_routes={SCORE_BATCH: {"queue": settings.queue}},
        # Flower needs task events; the sent event gives it queue wait times.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        # Pool processes are never recycled (None, Celery's default): each one loads TensorFlow
        # and the model, which a replacement would pay again, and a process's memory stays flat
        # without it (at most 2 malloc arenas, malloc_trim after every batch: workers.runtime;
        # the RSS over 5,000 images is in bench/README.md).
        worker_max_tasks_per_child=None,
        # A pool process loads TensorFlow and the model before it reports "up"; Celery's
        # default 4 s is far too short for that and would kill every replacement process in a
        # loop after a worker death (seen in tests/faults). Loading takes seconds, not minutes.
        worker_proc_alive_timeout=300,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Task arguments are object keys only, but keep Flower's copies short regardless.
        task_protocol=2,
        result_extended=False,
    )
    return app


app = make_celery(get_settings())
