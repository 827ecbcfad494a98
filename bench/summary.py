"""The figures put together: ratios to RAW, BASELINE and NAIVE, the CPU bounds on them, and the
table printed at the end of a run (report keys ``ratios`` and ``cpu_bounds``).
"""

from __future__ import annotations

from typing import Any


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


Row = tuple[str, Any, str]  # figure, value (None: not measured), unit / target


def table_rows(report: dict[str, Any]) -> list[Row]:
    """The table's rows, from whatever figures the report holds (``--only`` runs a subset)."""
    dist = report.get("distributed") or {}
    cpu = report.get("worker_cpu") or {}
    prod = report.get("producer") or {}
    ratios_ = report.get("ratios") or {}
    bounds = report.get("cpu_bounds") or {}
    rows: list[Row] = [
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
        ("PIPELINE / RAW", ratios_.get("pipeline_over_raw"), ">= 0.5"),
        ("embedded / RAW", ratios_.get("embedded_over_raw"), ">= 0.75"),
        ("PIPELINE / BASELINE", ratios_.get("pipeline_over_baseline"), ">= 100"),
        ("PIPELINE / NAIVE", ratios_.get("pipeline_over_naive"), ">= 2"),
        ("  CPU bound on PIPELINE / RAW", bounds.get("pipeline_over_raw_max"), "cores / CPU"),
        ("  CPU bound on embedded / RAW", bounds.get("embedded_over_raw_max"), "cores / CPU"),
        ("model CPU (RAW)", (report.get("raw") or {}).get("cpu_ms_per_image"), "ms/img"),
        ("worker CPU outside model", cpu.get("outside_model_cpu_ms_per_image"), "ms/img <= model"),
    ]
    for stage, value in (cpu.get("stages_cpu_ms_per_image") or {}).items():
        rows.append((f"  {stage}", value, "ms/img"))
    requests = cpu.get("object_store_requests_per_image") or {}
    if requests:
        rows.append(("  object store GET / PUT", f"{requests['get']} / {requests['put']}", "/img"))
    if cpu.get("requests_per_image_at_10pct_flagged") is not None:
        rows.append(
            (
                f"  requests/img at 10 % flagged (here {cpu['flagged_fraction']})",
                cpu["requests_per_image_at_10pct_flagged"],
                "<= 1.2",
            )
        )
    scale = report.get("scale_out") or {}
    if scale:
        rows += [
            ("1 worker process", (scale.get("workers_1") or {}).get("images_per_s"), "img/s"),
            ("2 worker processes", (scale.get("workers_2") or {}).get("images_per_s"), "img/s"),
            (
                "  per core, model on a GPU",
                scale.get("images_per_s_per_worker_core"),
                "img/s/core (worker)",
            ),
            (
                "  per core, with the services",
                scale.get("images_per_s_per_core_with_services"),
                "img/s/core",
            ),
        ]
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
    return rows


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"hemoscan pipeline bench ({report['model_note']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit / target")
    for name, value, unit in table_rows(report):
        table.add_row(name, "-" if value is None else str(value), unit)
    console = Console()
    console.print(table)
    console.print(f"load: start {report['load_at_start']}, end {report['load_at_end']}")
