"""`hemoscan status` and `hemoscan results`: a job's progress, throughput, failures by reason,
the scored list, and the classification report when the manifest carried labels.

Rendering only: the queries are ``schema.reports`` and nothing here writes to the database.
"""

from __future__ import annotations

import csv
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from hemoscan.privacy import key_ref
from schema import reports
from schema.models import RETRYABLE_REASONS, Job

DISCLAIMER = "Research and triage tool: these scores are not a diagnosis."


def labelled_metrics(session: Session, job_id: Any) -> dict[str, Any] | None:
    """Classification metrics against the manifest's labels (None without labels)."""
    return metrics_of(reports.labelled_scores(session, job_id))


def metrics_of(rows: list[tuple[int, float, float]]) -> dict[str, Any] | None:
    """Classification metrics of (label, probability, threshold) rows (None without rows)."""
    if not rows:
        return None
    import numpy as np

    from hybrid_model.metrics import classification_metrics

    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows])
    return classification_metrics(y, p, threshold=rows[0][2])


def print_job_list(console: Console, sessions: sessionmaker[Session]) -> None:
    table = Table(title="hemoscan jobs")
    for col in ("job", "state", "total", "scored", "failed", "positives", "created"):
        table.add_column(col, justify="right" if col in ("total", "scored", "failed") else "left")
    with sessions() as session:
        for job in reports.all_jobs(session):
            status = reports.job_status(session, job)
            state = status.progress
            table.add_row(
                job.name,
                status.state,
                str(state.total),
                str(state.scored),
                str(state.failed),
                str(state.positives),
                job.created_at.strftime("%Y-%m-%d %H:%M"),
            )
    console.print(table)


def summary_rows(status: reports.JobStatus) -> list[tuple[str, str]]:
    """The job's summary as (label, value) rows: `hemoscan status` and the HTML report."""
    job, state, rate = status.job, status.progress, status.throughput
    return [
        ("id", str(job.id)),
        ("source", job.source_uri),
        ("state", status.state),
        ("pass", str(job.pass_number)),
        ("model", job.model_version or "?"),
        ("objects", str(state.total)),
        ("scored", str(state.scored)),
        ("flagged (label 1)", str(state.positives)),
        ("failed", str(state.failed)),
        ("pending", str(max(state.total - state.done, 0))),
        ("throughput", f"{rate:.1f} images/s" if rate else "-"),
    ]


def failure_examples(session: Session, job_id: Any) -> list[tuple[str, int, str]]:
    """(reason, count, one example "key:<hash>: message") per failure reason of the job.

    Keys may hold identifiers, so the example names its key by hash (``hemoscan results``
    lists the keys themselves)."""
    rows = []
    for reason, count, key, message in reports.failure_examples(session, job_id):
        ref = key_ref(key)
        rows.append((reason, count, message if message.startswith(ref) else f"{ref}: {message}"))
    return rows


def print_status(console: Console, session: Session, job: Job) -> dict[str, Any]:
    """Counts, throughput, failures by reason and, with labels, the classification report."""
    status = reports.job_status(session, job)
    table = Table(title=f"job {job.name}", show_header=False)
    for label, value in summary_rows(status):
        table.add_row(label, value)
    console.print(table)
    examples = failure_examples(session, job.id)
    if examples:
        by_reason = Table(title="failures by reason")
        by_reason.add_column("reason")
        by_reason.add_column("count", justify="right")
        by_reason.add_column("a rerun", justify="center")
        by_reason.add_column("example")
        for reason, count, text in examples:
            rerun = "resends" if reason in RETRYABLE_REASONS else "keeps"
            by_reason.add_row(reason, str(count), rerun, text)
        console.print(by_reason)
    reasons = {reason: count for reason, count, _ in examples}
    metrics = labelled_metrics(session, job.id)
    if metrics is not None:
        from hybrid_model.metrics import render_metrics

        render_metrics(metrics, title=f"classification report against the labels ({job.name})")
    console.print(f"[dim]{DISCLAIMER}[/dim]")
    return {
        "progress": status.progress,
        "throughput": status.throughput,
        "failures": reasons,
        "metrics": metrics,
    }


def write_results(
    session: Session, job: Job, positives_only: bool, as_csv: bool, console: Console
) -> int:
    rows = reports.result_rows(session, job.id, positives_only)
    # flags: decode notes such as no_rescale (docs/decoding.md), ";"-separated.
    header = ("object_key", "probability", "label", "overlay", "raw_map", "flags")
    count = 0
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        for row in rows:
            flags = ";".join(row[5] or ())
            writer.writerow(
                (row[0], f"{row[1]:.6f}", int(row[2]), row[3] or "", row[4] or "", flags)
            )
            count += 1
        return count
    table = Table(title=f"results of {job.name}" + (" (flagged only)" if positives_only else ""))
    for col in header:
        table.add_column(col)
    for row in rows:
        flags = ", ".join(row[5] or ()) or "-"
        table.add_row(
            row[0], f"{row[1]:.4f}", str(int(row[2])), row[3] or "-", row[4] or "-", flags
        )
        count += 1
    console.print(table)
    console.print(f"[dim]{count} rows. {DISCLAIMER}[/dim]")
    return count
