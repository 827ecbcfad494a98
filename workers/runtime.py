"""Per-process state of a worker: the model, Grad-CAM, object stores, database sessions.

Built once per worker *pool process* (after Celery forks), never in the parent: TensorFlow
initialised before a fork hangs the children. ``get_runtime()`` is the only entry point.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from hemoscan.settings import Settings, get_settings
from hemoscan.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from workers.timing import BatchObserver

log = logging.getLogger(__name__)


def configure_tensorflow(settings: Settings) -> None:
    """Thread counts and GPU memory growth; must run before TensorFlow executes any op."""
    from hybrid_model.tfenv import load_tensorflow

    tf = load_tensorflow()

    try:
        if settings.tf_intra_threads:
            tf.config.threading.set_intra_op_parallelism_threads(settings.tf_intra_threads)
        if settings.tf_inter_threads:
            tf.config.threading.set_inter_op_parallelism_threads(settings.tf_inter_threads)
    except RuntimeError:  # TensorFlow already ran an op in this process (a benchmark, a test)
        log.warning("TensorFlow is already initialised: HEMOSCAN_TF_*_THREADS not applied")
    for gpu in tf.config.list_physical_devices("GPU"):
        # Grow GPU memory on demand so one process per GPU never grabs memory it won't use.
        tf.config.experimental.set_memory_growth(gpu, True)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Arrays up to this size come from the heap, and free memory at the heap's top is kept up to
# the trim threshold (``release_free_memory`` hands it back once per batch).
_HEAP_BLOCKS = 32 << 20
_KEEP_FREE = 256 << 20


@lru_cache(maxsize=1)
def _libc():  # type: ignore[no-untyped-def]
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_malloc(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas in this process and keep its freed pages for reuse.

    Arenas: glibc gives each thread that allocates concurrently its own arena (up to 8 per
    core), and the I/O threads' short-lived buffers (object bytes, decoded images, PNGs) leave
    every arena fragmented: the pool process's RSS then creeps up over thousands of images even
    though nothing leaks (bench/README.md: worker RSS).

    Thresholds: by default an array over 128 kB (a 256 x 256 float32 plane is 256 kB) is mapped
    fresh and unmapped when freed, or the heap's top is trimmed under it, so every numpy
    temporary of a decode pays its page faults again: three windows of a 512 x 512 slice took
    3.4 ms of CPU that way and 1.4 ms with the pages kept (docs/decoding.md, "Cost per
    stage"). ``release_free_memory`` still hands free pages back once per batch, so RSS stays
    flat. A no-op where libc is not glibc.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_ARENA_MAX, arenas)
        libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCKS)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE)


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``); cheap once per batch."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@dataclass
class JobInfo:
    id: uuid.UUID
    name: str
    source_uri: str


@dataclass
class Runtime:
    settings: Settings
    loaded: Any  # hybrid_model.io.LoadedModel
    gradcam: Any  # hybrid_model.gradcam.GradCam
    sessions: sessionmaker[Session]
    output: ObjectStore
    pool: ThreadPoolExecutor
    series_stage: Any  # hybrid_model.series.SeriesStage
    # How many of the pool's threads decode or render at once (HEMOSCAN_DECODE_THREADS): the
    # rest wait here, not on the GIL, whose contention costs CPU per image (docs/decoding.md).
    cpu_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(1)
    )
    model_batch: int = 0  # images per model call (0: the batch size); see model_batch_size()
    # Called with each batch's workers.timing.BatchTimes after its commit (the bench sets it;
    # None: nothing is timed beyond Item.timings).
    observer: BatchObserver | None = None
    hostname: str = field(default_factory=socket.gethostname)
    _stores: dict[str, ObjectStore] = field(default_factory=dict)
    _jobs: dict[uuid.UUID, JobInfo] = field(default_factory=dict)
    _secret: bytes | None = None

    @property
    def threshold(self) -> float:
        if self.settings.threshold is not None:
            return self.settings.threshold
        return float(self.loaded.threshold)

    @property
    def model_version(self) -> str:
        return str(self.loaded.metadata.get("version", "unknown"))

    @property
    def input_size(self) -> int:
        return int(self.loaded.input_size)

    @property
    def framing(self) -> str:
        """What of a slice the model sees (its metadata's ``framing``)."""
        return self.loaded.framing

    @property
    def pseudonym_secret(self) -> bytes:
        """The keyed pseudonyms' secret (checked when the runtime is built)."""
        if self._secret is None:
            self._secret = self.settings.effective_pseudonym_key()
        return self._secret

    def store(self, location: str) -> ObjectStore:
        if location not in self._stores:
            self._stores[location] = open_store(location, self.settings)
        return self._stores[location]

    def job(self, job_id: uuid.UUID) -> JobInfo:
        """The job's name and source (cached: they never change once the job exists)."""
        if job_id not in self._jobs:
            from schema.models import Job

            with self.sessions() as session:
                job = session.get(Job, job_id)
                if job is None:
                    raise LookupError(f"job {job_id} does not exist")
                self._jobs[job_id] = JobInfo(job.id, job.name, job.source_uri)
        return self._jobs[job_id]


def model_batch_size(settings: Settings) -> int:
    """Images per model call: ``model_batch``, but never more than a task holds.

    A task of ``batch_size`` keys then runs as several model calls, and the I/O threads fetch
    the next call's images and render and upload the previous call's heatmaps while the model
    runs (bench/README.md has the measurements behind the default of 16 on a CPU).
    """
    return min(settings.model_batch, settings.batch_size)


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime(settings: Settings | None = None) -> Runtime:
    """This process's runtime, built on first use (model loaded once per process)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = _build(settings or get_settings())
        return _runtime


def _build(settings: Settings) -> Runtime:
    from hybrid_model.gradcam import GradCam
    from hybrid_model.io import load_model
    from hybrid_model.series import load_stage
    from schema.db import session_factory

    tune_malloc()
    import cv2

    # The I/O threads already decode and render side by side: OpenCV's own thread pool under
    # each call only adds CPU (about a fifth more per decode on 2 cores, same wall time).
    cv2.setNumThreads(1)
    secret = settings.effective_pseudonym_key()  # a distributed worker without it stops here
    configure_tensorflow(settings)
    loaded = load_model(settings.model_path)
    threshold = settings.threshold if settings.threshold is not None else loaded.threshold
    stage = load_stage(settings.series_model_path, loaded.metadata, float(threshold))
    model_batch = model_batch_size(settings)
    # A fixed call shape (GradCam zero-pads to it) means the tf.function is traced once; trace
    # and run it now, so the first real batch pays no warm-up.
    gradcam = GradCam(loaded.model, model_batch=model_batch)
    import numpy as np

    size = int(loaded.input_size)
    gradcam(np.zeros((1, size, size, 3), dtype=np.float32))
    log.info(
        "worker %s loaded %s (batch %d in model calls of %d, threshold %s); series verdicts: %s",
        os.getpid(),
        loaded.note,
        settings.batch_size,
        model_batch,
        threshold,
        stage.method,
    )
    return Runtime(
        settings=settings,
        loaded=loaded,
        gradcam=gradcam,
        sessions=session_factory(settings.effective_database_url),
        output=open_store(settings.effective_output_location, settings),
        pool=ThreadPoolExecutor(settings.fetch_threads, thread_name_prefix="hemoscan-io"),
        series_stage=stage,
        cpu_slots=threading.BoundedSemaphore(settings.decode_threads),
        model_batch=model_batch,
        _secret=secret,
    )


def reset_after_fork() -> None:
    """Forget anything inherited from a parent process (engines, pools, the runtime)."""
    global _runtime
    from schema.db import forget_engines

    forget_engines(close=False)
    _runtime = None


def check_model_file(path: os.PathLike[str] | str) -> dict[str, Any]:
    """Fail fast, without TensorFlow, if the model file is missing or not a .keras archive.

    Returns the model's metadata. Raises ``ModelLoadError`` naming the file and the problem.
    """
    import zipfile

    from hybrid_model.metadata import ModelLoadError, read_metadata

    metadata = read_metadata(Path(path))  # missing file / not a zip -> ModelLoadError
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        broken = archive.testzip()
    if "config.json" not in names or not any(n.endswith(".weights.h5") for n in names):
        raise ModelLoadError(f"model file is not a Keras 3 model (no config or weights): {path}")
    if broken is not None:
        raise ModelLoadError(f"model file is corrupt (bad member {broken}): {path}")
    return metadata
