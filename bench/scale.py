"""Scale-out on one node: ``hemoscan scan s3://... --wait`` with 1 and then 2 worker processes
(concurrency 1 each) on the same archive, Redis, PostgreSQL and SeaweedFS. Report key
``scale_out``.

Each setting first scores a 100-image warm-up job (model loaded, connections open), then the
archive under a job of its own: images/s from the job's creation to its last row, and the CPU
ms per image of the worker pools together and of each service, from ``/proc``. With RAW's CPU
per image (the model call alone, measured in the same run) it gives the worker's CPU per image
outside the model, hence how many images/s one core keeps fed once a GPU takes the model's
share: what sizes a GPU node's cores.
"""

from __future__ import annotations

import uuid
from typing import Any

from bench.harness import DB_URL, Context, cli, load_average, log
from bench.procstat import cpu_per_image, cpu_snapshot
from bench.services import Worker, drop_jobs, job_rate, manifest, pipeline_setup, purge_queue

WORKER_COUNTS = (1, 2)


def _pools_cpu(workers: list[Worker]) -> dict[str, float]:
    """``cpu_snapshot`` with every worker's pool process summed under ``worker_pool``."""
    snaps = [cpu_snapshot(w.pool_pid()) for w in workers]
    out = dict(snaps[0])
    out["worker_pool"] = sum(s.get("worker_pool", 0.0) for s in snaps)
    return out


def scale_out(ctx: Context, n_images: int) -> None:
    source, queue, env = pipeline_setup(ctx, ctx.files[:n_images], "scale-")
    keys = [f"ct/{f.name}" for f in ctx.files[:n_images]]
    tag = uuid.uuid4().hex[:6]
    jobs: list[str] = []
    out: dict[str, Any] = {}
    for count in WORKER_COUNTS:
        workers = [Worker(env, f"bench-scale{count}-{i}") for i in range(count)]
        try:
            warm = f"bench-{tag}-w{count}-warm"
            jobs.append(warm)
            cli(["scan", source, "--job", warm, "--wait", "--manifest",
                 str(manifest(keys[:100], f"scale{count}"))], env)  # fmt: skip
            name = f"bench-{tag}-w{count}"
            jobs.append(name)
            before = _pools_cpu(workers)
            cli(["scan", source, "--job", name, "--wait"], env)
            result = job_rate(DB_URL, name)
            result["cpu_ms_per_image"] = cpu_per_image(
                before, _pools_cpu(workers), result["images"]
            )
        finally:
            for w in workers:
                w.stop()
        result["load"] = load_average()
        out[f"workers_{count}"] = result
        log(f"scale-out, {count} worker(s): {result['images_per_s']} img/s")
    one, two = out["workers_1"], out["workers_2"]
    out["speedup_2_over_1"] = round(two["images_per_s"] / one["images_per_s"], 3)
    model_cpu = (ctx.report.get("raw") or {}).get("cpu_ms_per_image")
    if model_cpu:
        outside = round(two["cpu_ms_per_image"]["worker_pool"] - model_cpu, 2)
        services = sum(
            two["cpu_ms_per_image"].get(k, 0.0) for k in ("seaweedfs", "postgresql", "redis")
        )
        out["model_cpu_ms_per_image_from_raw"] = model_cpu
        out["worker_cpu_outside_model_ms_per_image"] = outside
        out["services_cpu_ms_per_image"] = round(services, 2)
        # One core per this many images/s, once the model's own CPU moves to a GPU.
        out["images_per_s_per_worker_core"] = round(1000 / outside, 1) if outside > 0 else None
        out["images_per_s_per_core_with_services"] = round(1000 / (outside + services), 1)
    out["cpus"] = ctx.report.get("cpus")
    drop_jobs(DB_URL, jobs)
    purge_queue(queue)
    ctx.report["scale_out"] = out
