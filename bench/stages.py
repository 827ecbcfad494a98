"""Worker CPU outside the model: the worker's own ``process_batch`` run in this process on
SeaweedFS + PostgreSQL, each stage's thread CPU time read from the pipeline's timing hook
(``Runtime.observer``, ``workers.timing.BatchTimes``). Report key ``worker_cpu``.

Per image, in the I/O thread that ran it: fetch (one GET), decode, render+encode (the overlay
PNG, flagged images only under the default HEMOSCAN_HEATMAPS=maps), upload (its PUT); per
batch, in the task thread: the packed maps' encoding (added to render+encode) and PUT (added to
upload), database (the lookup and the commit transactions). Their sum is the worker's CPU
outside the model call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bench.harness import BUCKET, DB_URL, REDIS_URL, Context, load_average, log, settings
from bench.services import drop_jobs, s3_archive

if TYPE_CHECKING:
    from workers.timing import BatchTimes

# The pipeline's image stages under the names the report and bench/README.md use.
IMAGE_STAGE_NAMES = {
    "fetch": "fetch",
    "decode": "decode",
    "render": "render+encode",
    "upload": "upload",
}
DATABASE_STAGES = ("lookup", "commit")  # reported together as "database"
# The batch's packed maps: encoding and put, reported with the image stages of the same kind.
PACK_STAGES = {"pack": "render+encode", "pack_put": "upload"}


class Recorder:
    """A ``Runtime.observer`` that keeps every batch's record (called on the task thread)."""

    def __init__(self) -> None:
        self.batches: list[BatchTimes] = []

    def __call__(self, times: BatchTimes) -> None:
        self.batches.append(times)


def _per_image(total_ms: float, n: int) -> float:
    return round(total_ms / n, 2)


def aggregate(batches: Sequence[BatchTimes]) -> dict[str, Any]:
    """Per-image figures of the recorded batches: CPU and wall ms by stage, requests, calls.

    Divides by the images scored (one ``ImageTimes`` each); ValueError if there are none.
    """
    images = [image for batch in batches for image in batch.images]
    n = len(images)
    if n == 0:
        raise ValueError("the recorded batches scored no image")
    cpu: dict[str, float] = {}
    wall: dict[str, float] = {}
    for stage, name in IMAGE_STAGE_NAMES.items():
        cpu[name] = sum(image.cpu_ms[stage] for image in images)
        wall[name] = sum(image.wall_ms[stage] for image in images)
    for stage, name in PACK_STAGES.items():
        cpu[name] += sum(b.cpu_ms[stage] for b in batches)
        wall[name] += sum(b.wall_ms[stage] for b in batches)
    cpu["database"] = sum(b.cpu_ms[s] for b in batches for s in DATABASE_STAGES)
    wall["database"] = sum(b.wall_ms[s] for b in batches for s in DATABASE_STAGES)
    return {
        "images": n,
        "batches": len(batches),
        "failed": sum(b.failed for b in batches),
        "stages_cpu_ms_per_image": {k: _per_image(v, n) for k, v in sorted(cpu.items())},
        "stages_wall_ms_per_image": {k: _per_image(v, n) for k, v in sorted(wall.items())},
        "outside_model_cpu_ms_per_image": _per_image(sum(cpu.values()), n),
        "task_thread_cpu_ms_per_image": _per_image(sum(b.cpu_ms["total"] for b in batches), n),
        "model_task_thread_cpu_ms_per_image": _per_image(
            sum(b.cpu_ms["model"] for b in batches), n
        ),
        "model_wall_ms": round(sum(b.wall_ms["model"] for b in batches), 1),
        "batches_wall_ms": round(sum(b.wall_ms["total"] for b in batches), 1),
        "model_calls": sum(b.model_calls for b in batches),
        "object_store_requests_per_image": {
            "get": round(sum(b.fetched for b in batches) / n, 3),
            "put": round(sum(b.objects_written for b in batches) / n, 3),
            "put_packs": round(sum(b.packs_written for b in batches) / n, 4),
        },
    }


def worker_cpu(ctx: Context, n_images: int) -> None:
    """CPU ms per image of each stage of the worker's process_batch (distributed stores)."""
    from schema import jobs, results
    from schema.db import session_factory, upgrade
    from workers.pipeline import process_batch
    from workers.runtime import get_runtime

    upgrade(DB_URL)  # as `hemoscan db upgrade`: the step may run alone (--only profile)
    source = s3_archive(ctx.files)
    rt = get_runtime(
        settings(
            database_url=DB_URL,
            broker_url=REDIS_URL,
            output_location=f"s3://{BUCKET}/heatmaps",
            model_path=str(ctx.model),
            batch_size=ctx.batch_size,
            model_batch=ctx.model_batch,
        )
    )
    tag = uuid.uuid4().hex[:6]
    names = [f"bench-profile-{tag}-warm", f"bench-profile-{tag}"]
    keys = [f"ct/{f.name}" for f in ctx.files[:n_images]]
    warm_keys = keys[: ctx.batch_size]
    job_ids = []
    with session_factory(DB_URL).begin() as session:
        for name, scans in zip(names, (warm_keys, keys), strict=True):
            job, _ = jobs.open_job(session, name, source, {}, rt.model_version)
            results.add_scans(session, job.id, [{"object_key": k} for k in scans])
            job_ids.append(job.id)
    warm_job, job_id = job_ids
    # The same runtime (model, pool, stores) with an observer: the process's own stays as it is.
    recorder = Recorder()
    observed = replace(rt, observer=recorder)
    # Warm the connections on a job of its own: keys scored here would be skipped (done in
    # the pass) in the measured job.
    process_batch(observed, warm_job, warm_keys)
    recorder.batches.clear()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for start in range(0, len(keys), ctx.batch_size):
        process_batch(observed, job_id, keys[start : start + ctx.batch_size])
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    figures = aggregate(recorder.batches)
    n = figures["images"]
    with session_factory(DB_URL)() as session:
        flagged = results.progress(session, job_id).positives
    # Under HEMOSCAN_HEATMAPS=maps a PUT per flagged image plus the packs: what the requests
    # per image would be with 10 % of the images flagged (the reference point).
    requests = figures["object_store_requests_per_image"]
    figures["flagged_fraction"] = round(flagged / n, 3)
    figures["requests_per_image_at_10pct_flagged"] = round(
        requests["get"] + requests["put_packs"] + 0.10, 3
    )
    raw_cpu = ctx.report.get("raw", {}).get("by_batch", {})
    model_cpu = raw_cpu.get(f"batch_{rt.model_batch}", {}).get("cpu_ms_per_image")
    ctx.report["worker_cpu"] = {
        **figures,
        "keys": len(keys),
        "process_cpu_ms_per_image": round(cpu * 1000 / n, 2),
        "model_cpu_ms_per_image_from_raw": model_cpu,
        "process_minus_model_cpu_ms_per_image": (
            round(cpu * 1000 / n - model_cpu, 2) if model_cpu else None
        ),
        "images_per_s_in_process": round(n / wall, 2),
        "model_wall_share": round(figures["model_wall_ms"] / 1000 / wall, 3),
        "model_batch": rt.model_batch,
        "traces": rt.gradcam.traces,
        "load": load_average(),
        "method": "the pipeline's timing hook (Runtime.observer): time.thread_time() around "
        "each stage where it runs (I/O pool and task thread), process_batch of the worker run "
        "in this process on SeaweedFS + PostgreSQL",
    }
    log(f"worker cpu: {ctx.report['worker_cpu']}")
    drop_jobs(DB_URL, names)
