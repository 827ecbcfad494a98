"""The measurements behind bench/pipeline_bench.py, one function per figure.

Each function adds its figures to ``ctx.report`` (a plain dict written as JSON). Subprocesses
run the real ``hemoscan`` commands; the worker CPU profile runs the worker's own
``process_batch`` in this process with per-thread CPU clocks around each stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.pipeline_bench import (
    BUCKET,
    DB_URL,
    REDIS_URL,
    S3_URL,
    SCRATCH,
    base_env,
    dist_env,
    load_average,
    log,
)

HEMOSCAN = [sys.executable, "-m", "hemoscan.cli"]
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AWS_ACCESS_KEY_ID", "hemoscan")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "hemoscan-secret")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class Context:
    model: Path
    files: list[Path]
    batch_size: int  # keys per task (HEMOSCAN_BATCH_SIZE)
    model_batch: int  # images per model call (HEMOSCAN_MODEL_BATCH): what RAW is measured at
    quick: bool
    report: dict[str, Any]


# --- helpers -----------------------------------------------------------------------------


def _settings(**extra: Any):  # type: ignore[no-untyped-def]
    from hemoscan.settings import load_settings

    return load_settings(s3_endpoint_url=S3_URL, data_dir=SCRATCH / "data", **extra)


def _archive_folder(files: list[Path]) -> Path:
    """A folder holding only the phantom slices (hard links), keyed ct/<name>."""
    folder = SCRATCH / f"archive-{len(files)}"
    (folder / "ct").mkdir(parents=True, exist_ok=True)
    for f in files:
        target = folder / "ct" / f.name
        if not target.exists():
            os.link(f, target)
    return folder


def _s3_archive(files: list[Path]) -> str:
    from concurrent.futures import ThreadPoolExecutor

    from hemoscan.storage import open_store

    source = f"s3://{BUCKET}/archive-{len(files)}"
    store = open_store(source, _settings())
    store.create_bucket()  # type: ignore[attr-defined]
    if sum(1 for _ in store.list()) < len(files):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: store.put(f"ct/{p.name}", p.read_bytes()), files))
    return source


def _delete_s3_prefix(prefix: str) -> None:
    from hemoscan.storage import open_store

    store = open_store(f"s3://{BUCKET}", _settings())
    client = store._client  # type: ignore[attr-defined]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    for page in pages:
        keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})


def _manifest(keys: list[str], name: str) -> Path:
    path = SCRATCH / f"{name}.csv"
    path.write_text("key\n" + "\n".join(keys) + "\n")
    return path


def _cli(args: list[str], env: dict[str, str], timeout: float = 3600) -> str:
    proc = subprocess.run(
        [*HEMOSCAN, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"hemoscan {args[0]} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc.stdout + proc.stderr


def _job_rate(db_url: str, job_name: str) -> dict[str, Any]:
    """images/s from the job's creation (the producer starts) to the last committed row."""
    from sqlalchemy import create_engine, func, select

    from schema.models import Failure, Job, Prediction

    engine = create_engine(db_url)
    with engine.connect() as conn:
        job_id, created = conn.execute(
            select(Job.id, Job.created_at).where(Job.name == job_name)
        ).one()
        n, first, last = conn.execute(
            select(
                func.count(), func.min(Prediction.created_at), func.max(Prediction.updated_at)
            ).where(Prediction.job_id == job_id)
        ).one()
        failed = conn.scalar(select(func.count()).where(Failure.job_id == job_id))
        timings = conn.execute(select(Prediction.timings).where(Prediction.job_id == job_id)).all()
    engine.dispose()
    if isinstance(last, str):  # SQLite hands back text
        from datetime import datetime

        created, last = datetime.fromisoformat(str(created)), datetime.fromisoformat(last)
    seconds = (last - created).total_seconds()
    mean = {}
    for field in ("fetch_ms", "decode_ms", "render_ms", "upload_ms", "model_ms"):
        values = [t[0].get(field) for t in timings if t[0] and t[0].get(field) is not None]
        mean[field] = round(sum(values) / len(values), 2) if values else None
    return {
        "job_id": str(job_id),
        "images": int(n),
        "failed": int(failed or 0),
        "seconds": round(seconds, 3),
        "images_per_s": round(n / seconds, 2) if seconds > 0 else None,
        "wall_timings_mean": mean,
    }


class _Worker:
    def __init__(self, env: dict[str, str], name: str) -> None:
        self.log_path = SCRATCH / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*HEMOSCAN, "worker", f"--name={name}@bench", "--concurrency=1"],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while True:
            text = self.log_path.read_text(errors="replace")
            if " ready." in text and "loaded model" in text:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{text[-3000:]}")
            time.sleep(0.3)

    def pool_pid(self) -> int:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return int(out.split()[0])

    def memory_mib(self) -> dict[str, float]:
        fields = {}
        for line in Path(f"/proc/{self.pool_pid()}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = round(int(value.split()[0]) / 1024, 1)
        return fields

    def stop(self) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


_TICK = os.sysconf("SC_CLK_TCK")
_SERVICES = {"weed": "seaweedfs", "postgres": "postgresql", "redis-server": "redis"}


def cpu_snapshot(pool_pid: int | None = None) -> dict[str, float]:
    """CPU seconds so far: the whole machine (busy), the worker pool process, the services."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for v in fields) - int(fields[3]) - int(fields[4])  # minus idle, iowait
    out = {"machine_busy": busy / _TICK}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(rest[11]) + int(rest[12])) / _TICK  # utime + stime
        name = "worker_pool" if pool_pid and int(proc.name) == pool_pid else None
        name = name or next((v for k, v in _SERVICES.items() if comm.startswith(k)), None)
        if name is None and "train" in _cmdline(proc):
            name = "training"
        if name:
            out[name] = out.get(name, 0.0) + seconds
    return out


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_per_image(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per image of each consumer between two snapshots; 'other' is the rest."""
    out = {k: round((after.get(k, 0.0) - before.get(k, 0.0)) * 1000 / n, 2) for k in after}
    named = sum(v for k, v in out.items() if k != "machine_busy")
    out["other"] = round(out["machine_busy"] - named, 2)
    return out


def _drop_jobs(db_url: str, names: list[str]) -> None:
    from sqlalchemy import create_engine, delete, select

    from schema.models import Job

    engine = create_engine(db_url)
    with engine.begin() as conn:
        ids = conn.scalars(select(Job.id).where(Job.name.in_(names))).all()
        conn.execute(delete(Job).where(Job.name.in_(names)))
    engine.dispose()
    for job_id in ids:
        _delete_s3_prefix(f"heatmaps/{job_id}/")


# --- RAW ---------------------------------------------------------------------------------


def raw_again(ctx: Context) -> None:
    """RAW at the model-call size once more, later in the run: how much the machine moved."""
    raw(ctx, sizes=[ctx.model_batch], key="raw_again")


def raw(ctx: Context, sizes: list[int] | None = None, key: str = "raw") -> None:
    """Forward + Grad-CAM on preloaded tensors at the pipeline's model-call size.

    The headline is the size the worker's model calls really use (``model_batch``); batch 32,
    the previous headline, is measured too for comparison.
    """
    import numpy as np

    from hybrid_model.gradcam import GradCam
    from hybrid_model.io import load_model
    from hybrid_model.preprocess import decode

    loaded = load_model(ctx.model)
    sizes = sizes or sorted({ctx.model_batch, 32}, reverse=True)
    images = np.stack([decode(f.read_bytes(), f.name) for f in ctx.files[: sizes[0]]])
    seconds = 4.0 if ctx.quick else 12.0
    out: dict[str, Any] = {}
    for size in sizes:
        cam = GradCam(loaded.model, model_batch=size)
        batch = images[:size]
        cam(batch)
        cam(batch)
        count, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - wall0 < seconds:
            cam(batch)
            count += size
        wall = time.perf_counter() - wall0
        out[f"batch_{size}"] = {
            "images_per_s": round(count / wall, 2),
            "cpu_ms_per_image": round((time.process_time() - cpu0) * 1000 / count, 2),
            "traces": int(cam._compute.experimental_get_tracing_count()),
        }
    ctx.report[key] = {
        **out[f"batch_{ctx.model_batch}"],
        "batch": ctx.model_batch,
        "by_batch": out,
        "load": load_average(),
    }
    log(f"{key}: {ctx.report[key]}")


# --- PIPELINE, RSS, NAIVE (distributed) --------------------------------------------------


def distributed(ctx: Context, n_images: int, n_long: int, n_naive: int) -> None:
    source = _s3_archive(ctx.files)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = dist_env(
        ctx.model,
        queue,
        HEMOSCAN_BATCH_SIZE=str(ctx.batch_size),
        HEMOSCAN_MODEL_BATCH=str(ctx.model_batch),
    )
    _cli(["db", "upgrade"], env)
    keys = [f"ct/{f.name}" for f in ctx.files]
    jobs: list[str] = []
    tag = uuid.uuid4().hex[:6]

    def scan(name: str, *extra: str) -> dict[str, Any]:
        jobs.append(name)
        _cli(["scan", source, "--job", name, "--wait", *extra], env)
        result = _job_rate(DB_URL, name)
        result["load"] = load_average()
        log(f"{name}: {result['images']} images, {result['images_per_s']} img/s")
        return result

    worker = _Worker(env, "bench-pipeline")
    out: dict[str, Any] = {"queue": queue}
    try:
        warm = scan(f"bench-{tag}-first100", "--manifest", str(_manifest(keys[:100], "first100")))
        out["rss_after_100_mib"] = worker.memory_mib()
        before = cpu_snapshot(worker.pool_pid())
        main = scan(f"bench-{tag}-main")
        main["cpu_ms_per_image"] = cpu_per_image(
            before, cpu_snapshot(worker.pool_pid()), main["images"]
        )
        out["pipeline"] = main
        done = 100 + main["images"]
        repeats: list[float] = []
        series = [(100, out["rss_after_100_mib"]["VmRSS"])]
        series.append((100 + main["images"], worker.memory_mib()["VmRSS"]))
        while done < n_long:
            again = scan(f"bench-{tag}-long{len(repeats)}")
            repeats.append(again["images_per_s"])
            done += again["images"]
            series.append((done, worker.memory_mib()["VmRSS"]))
        out["rss_series_mib"] = series
        out["rss_after_long_mib"] = worker.memory_mib()
        out["long_images"] = done
        out["long_runs_images_per_s"] = repeats
        out["warm_run_images_per_s"] = warm["images_per_s"]
    finally:
        worker.stop()
    rss100 = out["rss_after_100_mib"]["VmRSS"]
    out["rss_growth"] = round(out["rss_after_long_mib"]["VmRSS"] / rss100 - 1, 4)

    # NAIVE: one image per task, on a worker whose model call takes exactly one image (so it
    # is not charged for padding a 1-image call to the batch shape).
    env1 = dist_env(ctx.model, queue, HEMOSCAN_BATCH_SIZE="1")
    worker = _Worker(env1, "bench-naive")
    try:
        naive_keys = _manifest(keys[:n_naive], "naive")
        env = env1
        out["naive"] = scan(
            f"bench-{tag}-naive", "--manifest", str(naive_keys), "--batch-size", "1"
        )
    finally:
        worker.stop()
    _drop_jobs(DB_URL, jobs)
    _purge_queue(queue)
    ctx.report["distributed"] = out


def _purge_queue(queue: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(queue, f"_kombu.binding.{queue}")


# --- embedded ----------------------------------------------------------------------------


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def embedded(ctx: Context, n_images: int) -> None:
    """`hemoscan scan FOLDER` with no services; also its CPU per image.

    The CPU per image is a difference of two scans (``n_images`` and 32 images): the process's
    fixed start-up (imports, loading the model) cancels out.
    """
    import shutil

    out: dict[str, float] = {}
    for count in (32, n_images):
        folder = _archive_folder(ctx.files[:count])
        data = SCRATCH / f"embedded-{uuid.uuid4().hex[:6]}"
        env = base_env(
            ctx.model,
            HEMOSCAN_DATA_DIR=str(data),
            HEMOSCAN_BATCH_SIZE=str(ctx.batch_size),
            HEMOSCAN_MODEL_BATCH=str(ctx.model_batch),
        )
        cpu0 = _children_cpu()
        _cli(["scan", str(folder), "--job", "bench-embedded"], env)
        out[f"cpu_s_{count}"] = _children_cpu() - cpu0
        if count == n_images:
            result = _job_rate(f"sqlite:///{data}/hemoscan.db", "bench-embedded")
        shutil.rmtree(data, ignore_errors=True)
    result["load"] = load_average()
    result["cpu_ms_per_image"] = round(
        (out[f"cpu_s_{n_images}"] - out["cpu_s_32"]) * 1000 / (n_images - 32), 2
    )
    ctx.report["embedded"] = result
    log(f"embedded: {result['images_per_s']} img/s, {result['cpu_ms_per_image']} CPU ms/img")


# --- worker CPU outside the model ---------------------------------------------------------


class _Clock:
    """Per-stage thread CPU time, summed over the I/O threads and the task thread."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.cpu[stage] = self.cpu.get(stage, 0.0) + seconds
            self.calls[stage] = self.calls.get(stage, 0) + 1

    def wrap(self, stage: str, fn):  # type: ignore[no-untyped-def]
        def timed(*a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                self.add(stage, time.thread_time() - t0)

        return timed


class _TimedSessions:
    def __init__(self, inner, clock: _Clock) -> None:  # type: ignore[no-untyped-def]
        self._inner, self._clock = inner, clock

    def __call__(self, *a, **kw):  # type: ignore[no-untyped-def]
        return self._inner(*a, **kw)

    @contextmanager
    def begin(self):  # type: ignore[no-untyped-def]
        t0 = time.thread_time()
        try:
            with self._inner.begin() as session:
                yield session
        finally:
            self._clock.add("database", time.thread_time() - t0)


def worker_cpu(ctx: Context, n_images: int) -> None:
    """CPU ms per image of each stage of the worker's process_batch (distributed stores)."""
    import workers.pipeline as pipeline
    from hemoscan.storage import S3Store
    from schema import jobs, results
    from schema.db import session_factory
    from workers.runtime import get_runtime

    source = _s3_archive(ctx.files)
    settings = _settings(
        database_url=DB_URL,
        broker_url=REDIS_URL,
        output_location=f"s3://{BUCKET}/heatmaps",
        model_path=str(ctx.model),
        batch_size=ctx.batch_size,
        model_batch=ctx.model_batch,
    )
    rt = get_runtime(settings)
    name = f"bench-profile-{uuid.uuid4().hex[:6]}"
    keys = [f"ct/{f.name}" for f in ctx.files[:n_images]]
    with session_factory(DB_URL).begin() as session:
        job, _ = jobs.open_job(session, name, source, {}, rt.model_version)
        results.add_scans(session, job.id, [{"object_key": k} for k in keys])
        job_id = job.id
    clock = _Clock()
    patched = [
        (S3Store, "get"),
        (S3Store, "put"),
        (pipeline, "decode"),
        (pipeline, "overlay_png"),
        (pipeline, "raw_map_npy"),
    ]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr in patched]
    stage = {"get": "fetch", "put": "upload", "decode": "decode"}
    for obj, attr, fn in saved:
        setattr(obj, attr, clock.wrap(stage.get(attr, "render+encode"), fn))
    gradcam, sessions = rt.gradcam, rt.sessions
    model_wall = [0.0]

    def timed_gradcam(images):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return gradcam(images)
        finally:
            model_wall[0] += time.perf_counter() - t0

    rt.gradcam = timed_gradcam
    rt.sessions = _TimedSessions(sessions, clock)  # type: ignore[assignment]
    try:
        pipeline.process_batch(rt, job_id, keys[: ctx.batch_size])  # warm connections
        clock.cpu.clear()
        model_wall[0] = 0.0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        main_thread0 = time.thread_time()
        for start in range(0, len(keys), ctx.batch_size):
            pipeline.process_batch(rt, job_id, keys[start : start + ctx.batch_size])
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        task_thread = time.thread_time() - main_thread0
    finally:
        for obj, attr, fn in saved:
            setattr(obj, attr, fn)
        rt.gradcam, rt.sessions = gradcam, sessions
    n = len(keys)
    per_image = {k: round(v * 1000 / n, 2) for k, v in sorted(clock.cpu.items())}
    outside = round(sum(clock.cpu.values()) * 1000 / n, 2)
    raw_cpu = ctx.report.get("raw", {}).get("by_batch", {})
    model_cpu = None
    if raw_cpu:
        model_cpu = raw_cpu.get(f"batch_{rt.model_batch}", {}).get("cpu_ms_per_image")
    ctx.report["worker_cpu"] = {
        "images": n,
        "stages_cpu_ms_per_image": per_image,
        "outside_model_cpu_ms_per_image": outside,
        "process_cpu_ms_per_image": round(cpu * 1000 / n, 2),
        "model_cpu_ms_per_image_from_raw": model_cpu,
        "process_minus_model_cpu_ms_per_image": (
            round(cpu * 1000 / n - model_cpu, 2) if model_cpu else None
        ),
        "task_thread_cpu_ms_per_image": round(task_thread * 1000 / n, 2),
        "images_per_s_in_process": round(n / wall, 2),
        "model_wall_share": round(model_wall[0] / wall, 3),
        "model_batch": rt.model_batch,
        "traces": int(gradcam._compute.experimental_get_tracing_count()),
        "load": load_average(),
        "method": "time.thread_time() around each stage in every thread (I/O pool and task "
        "thread), process_batch of the worker run in this process on SeaweedFS + PostgreSQL",
    }
    log(f"worker cpu: {ctx.report['worker_cpu']}")
    _drop_jobs(DB_URL, [name])


# --- BASELINE ----------------------------------------------------------------------------


def baseline(ctx: Context, n: int) -> None:
    """A fresh `hemoscan predict FILE --heatmaps DIR` process per image."""
    out_dir = SCRATCH / "baseline-heatmaps"
    env = base_env(ctx.model)
    times = []
    for f in ctx.files[:n]:
        t0 = time.perf_counter()
        _cli(
            ["predict", str(f), "--model", str(ctx.model), "--heatmaps", str(out_dir)]
            + ["--batch-size", "1"],
            env,
        )
        times.append(time.perf_counter() - t0)
    mean = sum(times) / len(times)
    ctx.report["baseline"] = {
        "images": n,
        "seconds_per_image": round(mean, 3),
        "images_per_s": round(1 / mean, 4),
        "command": "hemoscan predict FILE --heatmaps DIR --batch-size 1 (one process per image)",
        "load": load_average(),
    }
    log(f"baseline: {mean:.2f} s per image")


# --- producer ----------------------------------------------------------------------------


def _producer_child(manifest: str, queue: str, job: str, folder: str, model: str) -> None:
    """Runs in a child process: one scan of the manifest, then its own peak RSS as JSON."""
    import producer.scan as scan
    from hemoscan.settings import load_settings
    from producer.senders import BrokerSender

    settings = load_settings(
        broker_url=REDIS_URL, database_url=DB_URL, queue=queue, model_path=model
    )
    spent = {"register_s": 0.0, "send_s": 0.0}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        def inner(*a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t0

        return inner

    if hasattr(scan, "_register"):  # absent before the producer change (A/B runs)
        scan._register = timed("register_s", scan._register)  # type: ignore[assignment]
    BrokerSender.send = timed("send_s", BrokerSender.send)  # type: ignore[method-assign]
    plan = scan.ScanPlan(source=folder, job_name=job, manifest=Path(manifest))
    outcome = scan.run_scan(settings, plan)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    result = {
        "sent": outcome.sent,
        "listed": outcome.listed,
        "seconds": outcome.seconds,
        "peak_rss_mib": round(hwm / 1024, 1),
        "register_db_s": round(spent["register_s"], 3),
        "send_thread_busy_s": round(spent["send_s"], 3),
    }
    print(json.dumps(result))


def producer(ctx: Context, n_keys: int) -> None:
    folder = SCRATCH / "producer-source"
    folder.mkdir(parents=True, exist_ok=True)
    env = base_env(ctx.model)
    _cli(["db", "upgrade"], {**env, "HEMOSCAN_DATABASE_URL": DB_URL})
    out: dict[str, Any] = {}
    names: list[str] = []
    queue = f"bench-throwaway-{uuid.uuid4().hex[:8]}"
    try:
        for count in (n_keys // 10, n_keys):
            manifest = SCRATCH / f"keys-{count}.csv"
            if not manifest.exists():
                manifest.write_text("".join(f"slices/{i:07d}.dcm\n" for i in range(count)))
            name = f"bench-producer-{uuid.uuid4().hex[:6]}"
            names.append(name)
            code = (
                "from bench.measure import _producer_child as p; "
                f"p({str(manifest)!r}, {queue!r}, {name!r}, {str(folder)!r}, {str(ctx.model)!r})"
            )
            proc = subprocess.run(
                [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-3000:])
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["keys_per_s"] = round(result["sent"] / result["seconds"], 1)
            result["load"] = load_average()
            out[f"keys_{count}"] = result
            log(f"producer {count} keys: {result}")
    finally:
        _purge_queue(queue)
        _drop_jobs(DB_URL, names)
    big, small = out[f"keys_{n_keys}"], out[f"keys_{n_keys // 10}"]
    ctx.report["producer"] = {
        **big,
        "by_listing": out,
        "peak_rss_growth_10x_listing": round(big["peak_rss_mib"] / small["peak_rss_mib"] - 1, 4),
        "queue_deleted": queue,
    }


# --- database ----------------------------------------------------------------------------


def db_writes(ctx: Context) -> None:
    """rows/s of results.record_batch, one transaction per batch as the workers write."""
    from schema import jobs, results
    from schema.db import session_factory

    sessions = session_factory(DB_URL)
    name = f"bench-db-{uuid.uuid4().hex[:6]}"
    n = 3200 if ctx.quick else 9600
    with sessions.begin() as session:
        job, _ = jobs.open_job(session, name, "s3://bench/none", {}, "bench")
        job_id = job.id
        results.add_scans(session, job_id, [{"object_key": f"k{i}"} for i in range(n)])
        ids = list(results.scan_ids(session, job_id, [f"k{i}" for i in range(n)]).values())
    rows = [
        {
            "scan_id": sid,
            "probability": 0.5,
            "label": False,
            "threshold": 0.5,
            "model_version": "bench",
            "overlay_uri": f"s3://bench/{sid}.png",
            "raw_map_uri": f"s3://bench/{sid}.npy",
            "timings": {"fetch_ms": 1.0, "decode_ms": 1.0, "model_ms": 10.0},
            "worker_host": "bench",
        }
        for sid in ids
    ]
    t0 = time.perf_counter()
    for start in range(0, n, ctx.batch_size):
        with sessions.begin() as session:
            results.record_batch(session, job_id, rows[start : start + ctx.batch_size], [])
    seconds = time.perf_counter() - t0
    ctx.report["database"] = {
        "rows": n,
        "rows_per_transaction": ctx.batch_size,
        "rows_per_s": round(n / seconds, 1),
        "load": load_average(),
    }
    log(f"database: {ctx.report['database']}")
    _drop_jobs(DB_URL, [name])


# --- summary -----------------------------------------------------------------------------


def ratios(report: dict[str, Any]) -> None:
    raw = (report.get("raw") or {}).get("images_per_s")
    base = (report.get("baseline") or {}).get("images_per_s")
    dist = report.get("distributed") or {}
    pipe = (dist.get("pipeline") or {}).get("images_per_s")
    naive = (dist.get("naive") or {}).get("images_per_s")
    emb = (report.get("embedded") or {}).get("images_per_s")

    def r(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    # Upper bounds from CPU alone: the machine's cores divided by the CPU per image that the
    # pipeline's own processes spent (the training job and the rest of the machine excluded).
    cores = report.get("cpus") or 1
    used = (dist.get("pipeline") or {}).get("cpu_ms_per_image") or {}
    own = sum(used.get(k, 0.0) for k in ("worker_pool", "seaweedfs", "postgresql", "redis"))
    emb_cpu = (report.get("embedded") or {}).get("cpu_ms_per_image")
    report["cpu_bounds"] = {
        "pipeline_cpu_ms_per_image": round(own, 2) if own else None,
        "pipeline_max_images_per_s": round(cores * 1000 / own, 1) if own else None,
        "pipeline_over_raw_max": r(cores * 1000 / own, raw) if own else None,
        "embedded_cpu_ms_per_image": emb_cpu,
        "embedded_max_images_per_s": round(cores * 1000 / emb_cpu, 1) if emb_cpu else None,
        "embedded_over_raw_max": r(cores * 1000 / emb_cpu, raw) if emb_cpu else None,
        "raw_cores_busy": round(
            raw * (report.get("raw") or {}).get("cpu_ms_per_image", 0) / 1000, 2
        )
        if raw
        else None,
    }
    report["ratios"] = {
        "pipeline_over_raw": r(pipe, raw),
        "embedded_over_raw": r(emb, raw),
        "pipeline_over_baseline": r(pipe, base),
        "embedded_over_baseline": r(emb, base),
        "pipeline_over_naive": r(pipe, naive),
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    dist = report.get("distributed") or {}
    cpu = report.get("worker_cpu") or {}
    prod = report.get("producer") or {}
    ratios_ = report.get("ratios") or {}
    bounds = report.get("cpu_bounds") or {}
    rows = [
        (
            f"RAW forward+Grad-CAM, batch {(report.get('raw') or {}).get('batch')}",
            (report.get("raw") or {}).get("images_per_s"),
            "img/s",
        ),
        (
            "RAW again, after the pipelines",
            (report.get("raw_again") or {}).get("images_per_s"),
            "img/s",
        ),
        ("PIPELINE distributed", (dist.get("pipeline") or {}).get("images_per_s"), "img/s"),
        ("PIPELINE embedded", (report.get("embedded") or {}).get("images_per_s"), "img/s"),
        ("BASELINE process/image", (report.get("baseline") or {}).get("images_per_s"), "img/s"),
        ("NAIVE 1 image/task", (dist.get("naive") or {}).get("images_per_s"), "img/s"),
        ("PIPELINE / RAW", ratios_.get("pipeline_over_raw"), ">= 0.6"),
        ("embedded / RAW", ratios_.get("embedded_over_raw"), ">= 0.75"),
        ("PIPELINE / BASELINE", ratios_.get("pipeline_over_baseline"), ">= 100"),
        ("PIPELINE / NAIVE", ratios_.get("pipeline_over_naive"), ">= 2"),
        ("  CPU bound on PIPELINE / RAW", bounds.get("pipeline_over_raw_max"), "cores / CPU"),
        ("  CPU bound on embedded / RAW", bounds.get("embedded_over_raw_max"), "cores / CPU"),
        ("worker CPU outside model", cpu.get("outside_model_cpu_ms_per_image"), "ms/img <= 8"),
    ]
    for stage, value in (cpu.get("stages_cpu_ms_per_image") or {}).items():
        rows.append((f"  {stage}", value, "ms/img"))
    if dist:
        rows += [
            ("worker RSS after 100", dist["rss_after_100_mib"]["VmRSS"], "MiB"),
            (f"worker RSS after {dist['long_images']}", dist["rss_after_long_mib"]["VmRSS"], "MiB"),
            ("worker RSS growth", dist["rss_growth"], "<= 0.10"),
        ]
    if prod:
        rows += [
            (f"producer ({prod.get('sent')} keys)", prod.get("keys_per_s"), "keys/s >= 20000"),
            ("producer peak RSS", prod.get("peak_rss_mib"), "MiB"),
            ("producer RSS growth, 10x keys", prod.get("peak_rss_growth_10x_listing"), ""),
        ]
    rows.append(("record_batch", (report.get("database") or {}).get("rows_per_s"), "rows/s"))
    table = Table(title=f"hemoscan pipeline bench ({report['model_note']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit / target")
    for name, value, unit in rows:
        table.add_row(name, "-" if value is None else str(value), unit)
    console = Console()
    console.print(table)
    console.print(f"load: start {report['load_at_start']}, end {report['load_at_end']}")
