"""The pipeline's timing hook: what ``Runtime.observer`` receives for each committed batch.

Per scored image, the wall and thread CPU time of each stage; per batch, the lookup, model and
commit stages and the totals. With no observer nothing extra is measured or allocated.
bench/stages.py reads it (bench/README.md: worker CPU outside the model).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Per image, in the I/O thread that runs it: fetch (the store's get), decode, render (the
# overlay PNG), upload (its put). Per batch, in the task thread: lookup (the transaction that
# reads the pass, the scan ids and the done keys), model (the model and Grad-CAM calls), pack
# (the batch's maps encoded as one .npz), pack_put (its put), commit (the transaction that
# records the rows), total (process_batch).
IMAGE_STAGES = ("fetch", "decode", "render", "upload")
BATCH_STAGES = ("lookup", "model", "pack", "pack_put", "commit", "total")
# Objects written per image with every heatmap (HEMOSCAN_HEATMAPS=all): its overlay (its map
# is a row of the batch's one pack, counted in ``BatchTimes.packs_written``).
HEATMAP_OBJECTS = 1


@dataclass(frozen=True)
class ImageTimes:
    """One scored image: milliseconds per stage of ``IMAGE_STAGES``, every stage present.

    ``cpu_ms`` is ``time.thread_time()`` of the thread that ran the stage, so the work of other
    threads running meanwhile is not in it. A stage the heatmap policy skipped is 0.0, and
    ``objects_written`` counts the heatmap objects put for it (0 to ``HEATMAP_OBJECTS``; a
    volume's are summed over its slices).
    """

    scan_id: int
    key: str  # as logs show it (hemoscan.privacy)
    wall_ms: dict[str, float]
    cpu_ms: dict[str, float]
    objects_written: int


@dataclass(frozen=True)
class BatchTimes:
    """One batch, handed to ``Runtime.observer`` after its commit.

    ``wall_ms`` and ``cpu_ms`` hold every stage of ``BATCH_STAGES``; their CPU is the task
    thread's (the model's: the calling thread only, not TensorFlow's own thread pools).
    ``fetched`` counts the batch's fetches from the source (one GET each on S3), scored or not;
    ``packs_written`` the packed-maps objects put (0 or 1).
    """

    job_id: uuid.UUID
    images: tuple[ImageTimes, ...]  # one per scored image (prediction row), in batch order
    fetched: int
    failed: int
    model_calls: int
    model_images: int
    packs_written: int
    wall_ms: dict[str, float]
    cpu_ms: dict[str, float]

    @property
    def objects_written(self) -> int:
        return self.packs_written + sum(image.objects_written for image in self.images)


BatchObserver = Callable[[BatchTimes], None]


class Stopwatch:
    """Wall and thread CPU ms per batch stage, summed; built only when an observer is set."""

    def __init__(self) -> None:
        self.wall = dict.fromkeys(BATCH_STAGES, 0.0)
        self.cpu = dict.fromkeys(BATCH_STAGES, 0.0)
        self._began = (time.perf_counter(), time.thread_time())

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.wall[name] += (time.perf_counter() - wall) * 1000
            self.cpu[name] += (time.thread_time() - cpu) * 1000

    def finish(self) -> None:
        self.wall["total"] = (time.perf_counter() - self._began[0]) * 1000
        self.cpu["total"] = (time.thread_time() - self._began[1]) * 1000


_UNTIMED = nullcontext()


def timed_stage(watch: Stopwatch | None, name: str) -> AbstractContextManager[None]:
    return _UNTIMED if watch is None else watch.stage(name)


def cpu_lap(cpu: dict[str, float], stage: str, since: float) -> float:
    """Record this thread's CPU ms since ``since`` as ``stage``; returns the clock now."""
    now = time.thread_time()
    cpu[stage] = (now - since) * 1000
    return now


def notify(observer: BatchObserver, times: BatchTimes) -> None:
    # A measuring hook must never fail the batch it measures: its rows are committed already.
    try:
        observer(times)
    except Exception:
        log.exception("the batch observer failed (its batch is committed)")
