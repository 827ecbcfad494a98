"""How a batch reaches a worker: by task name over the broker, or in this process.

The broker path never imports TensorFlow (it sends the task by name). The in-process path,
the embedded mode, runs the very same Celery task body through ``Task.apply``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from hemoscan.settings import Settings


class Sender(Protocol):
    in_process: bool

    def send(self, job_id: str, keys: Sequence[str], pass_number: int) -> dict[str, Any] | None: ...
    def close(self) -> None: ...


class BrokerSender:
    """Publishes ``hemoscan.score_batch`` messages (job id, object keys, pass) to the queue."""

    in_process = False

    def __init__(self, settings: Settings) -> None:
        from workers.celery_app import SCORE_BATCH, make_celery

        self._name = SCORE_BATCH
        self._queue = settings.queue
        self._app = make_celery(settings)
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


class InProcessSender:
    """Runs each batch here and now through the task code (no broker, no worker)."""

    in_process = True

    def __init__(self, settings: Settings, on_load: Callable[[str], None] | None = None) -> None:
        # Imported lazily: this is where TensorFlow gets loaded, only in the embedded mode.
        from workers.runtime import get_runtime
        from workers.tasks import score_batch

        runtime = get_runtime(settings)
        if on_load is not None:
            on_load(runtime.loaded.note)
        self._task = score_batch

    def send(self, job_id: str, keys: Sequence[str], pass_number: int) -> dict[str, Any]:
        result = self._task.apply(args=[job_id, list(keys), pass_number], throw=True)
        return dict(result.get())

    def close(self) -> None:
        pass


def make_sender(settings: Settings, on_load: Callable[[str], None] | None = None) -> Sender:
    if settings.distributed:
        return BrokerSender(settings)
    return InProcessSender(settings, on_load)
