"""How a batch reaches a worker: the ``Sender`` protocol, and the broker's sender.

The broker path never imports TensorFlow: it sends the task by name, and imports only the
Celery configuration (``workers.celery_app``, TensorFlow-free by contract). The embedded mode's
sender, which runs the task in this process, lives with the task (``workers.inprocess``); the
command line picks one (``hemoscan.cli.progress``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from hemoscan.settings import Settings

if TYPE_CHECKING:
    from celery import Celery


class Sender(Protocol):
    in_process: bool

    def send(self, job_id: str, keys: Sequence[str], pass_number: int) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


class BrokerSender:
    """Publishes ``hemoscan.score_batch`` messages (job id, object keys, pass) to the queue."""

    in_process = False

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        """``app``: a Celery app to send through (default: ``make_celery(settings)``; the
        bench passes one with the task-sent event off to measure what the event costs)."""
        from workers.celery_app import SCORE_BATCH, make_celery

        self._name = SCORE_BATCH
        self._queue = settings.queue
        self._app = app or make_celery(settings)
        self._conn = self._app.connection_for_write()
        self._producer = self._app.amqp.Producer(self._conn)

    def send(self, job_id: str, keys: Sequence[str], pass_number: int) -> None:
        self._app.send_task(
            self._name,
            args=[job_id, list(keys), pass_number],
            queue=self._queue,
            producer=self._producer,
            # Read by workers/metrics.py: the queue wait is task start minus this.
            headers={"hemoscan_sent_at": time.time()},
        )
        return None

    def close(self) -> None:
        self._conn.release()
