"""The embedded mode's sender: each batch runs here and now through the Celery task's code.

No broker and no worker process: ``Task.apply`` runs the very task body a worker runs, so the
embedded mode and the distributed one share one code path. Importing this module loads the
model's runtime (TensorFlow), so only the embedded mode's command line imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hemoscan.settings import Settings


class InProcessSender:
    """Runs each batch in this process through the task code (``producer.senders.Sender``)."""

    in_process = True

    def __init__(self, settings: Settings, on_load: Callable[[str], None] | None = None) -> None:
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
