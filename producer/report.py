"""What a job looks like: progress, throughput, failures by reason, the scored list, and the
classification report when the manifest carried labels."""

from __future__ import annotations

import csv
import sys
import time
import uuid
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hemoscan.privacy import key_ref
from schema import results
from schema.models import RETRYABLE_REASONS, Failure, Job, Prediction, Scan

STALL_HINT_SECONDS = 30
DISCLAIMER = "Research and triage tool: these scores are not a diagnosis."


def throughput(session: Session, job_id: uuid.UUID) -> float | None:
    """Images per second between the job's first and last result."""
    first, last, count = session.execute(
        select(
            func.min(Prediction.created_at), func.max(Prediction.updated_at), func.count()
        ).where(Prediction.job_id == job_id)
    ).one()
    if not count or first is None or last is None:
        return None
    seconds = (last - first).total_seconds()
    return count / seconds if seconds > 0 else None


def labelled_metrics(session: Session, job_id: uuid.UUID) -> dict[str, Any] | None:
    """Classification metrics against the manifest's labels (None without labels)."""
    rows = session.execute(
        select(Scan.true_label, Prediction.probability, Prediction.threshold)
        .join(Prediction, Prediction.scan_id == Scan.id)
        .where(Scan.job_id == job_id, Scan.true_label.is_not(None))
    ).all()
    if not rows:
        return None
    import numpy as np

    from hybrid_model.metrics import classification_metrics

    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows])
    return classification_metrics(y, p, threshold=float(rows[0][2]))


def print_job_list(console: Console, sessions: sessionmaker[Session]) -> None:
    table = Table(title="hemoscan jobs")
    for col in ("job", "state", "total", "scored", "failed", "positives", "created"):
        table.add_column(col, justify="right" if col in ("total", "scored", "failed") else "left")
    with sessions.begin() as session:
        for job in session.scalars(select(Job).order_by(Job.created_at)):
            state = results.refresh_job(session, job)
            table.add_row(
                job.name,
                job.state,
                str(state.total),
                str(state.scored),
                str(state.failed),
                str(state.positives),
                job.created_at.strftime("%Y-%m-%d %H:%M"),
            )
    console.print(table)


def summary_rows(job: Job, state: results.Progress, rate: float | None) -> list[tuple[str, str]]:
    """The job's summary as (label, value) rows: `hemoscan status` and the HTML report."""
    return [
        ("id", str(job.id)),
        ("source", job.source_uri),
        ("state", job.state),
        ("model", job.model_version or "?"),
        ("objects", str(state.total)),
        ("scored", str(state.scored)),
        ("flagged (label 1)", str(state.positives)),
        ("failed", str(state.failed)),
        ("pending", str(max(state.total - state.done, 0))),
        ("throughput", f"{rate:.1f} images/s" if rate else "-"),
    ]


def failure_examples(session: Session, job_id: uuid.UUID) -> list[tuple[str, int, str]]:
    """(reason, count, one example "key:<hash>: message") per failure reason of the job.

    Keys may hold identifiers, so the example names its key by hash (``hemoscan results``
    lists the keys themselves)."""
    rows = []
    for reason, count in results.failures_by_reason(session, job_id).items():
        key, message = session.execute(
            select(Scan.object_key, Failure.message)
            .join(Failure, Failure.scan_id == Scan.id)
            .where(Failure.job_id == job_id, Failure.reason == reason)
            .limit(1)
        ).one()
        ref = key_ref(key)
        rows.append((reason, count, message if message.startswith(ref) else f"{ref}: {message}"))
    return rows


def print_status(console: Console, session: Session, job: Job) -> dict[str, Any]:
    """Counts, throughput, failures by reason and, with labels, the classification report."""
    state = results.refresh_job(session, job)
    rate = throughput(session, job.id)
    table = Table(title=f"job {job.name}", show_header=False)
    for label, value in summary_rows(job, state, rate):
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
    return {"progress": state, "throughput": rate, "failures": reasons, "metrics": metrics}


def write_results(
    session: Session, job: Job, positives_only: bool, as_csv: bool, console: Console
) -> int:
    query = (
        select(
            Scan.object_key,
            Prediction.probability,
            Prediction.label,
            Prediction.overlay_uri,
            Prediction.raw_map_uri,
            Prediction.flags,
        )
        .join(Prediction, Prediction.scan_id == Scan.id)
        .where(Prediction.job_id == job.id)
        .order_by(Prediction.probability.desc(), Scan.object_key)
    )
    if positives_only:
        query = query.where(Prediction.label.is_(True))
    rows = session.execute(query.execution_options(yield_per=1000))
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


def pass_progress(session: Session, job: Job, expected: int) -> results.Progress:
    """Progress of the job's current pass (a ``--rescore``): rows of that pass, of ``expected``.

    Rows carry the pass they were computed in, so no clock is compared: neither the producer's
    nor the workers'.
    """
    scored, positives = session.execute(
        select(func.count(), func.count().filter(Prediction.label.is_(True))).where(
            Prediction.job_id == job.id, Prediction.pass_number >= job.pass_number
        )
    ).one()
    failed = session.scalar(
        select(func.count()).where(Failure.job_id == job.id, Failure.pass_number >= job.pass_number)
    )
    return results.Progress(
        total=expected, scored=int(scored), failed=int(failed or 0), positives=int(positives)
    )


def wait_for_job(
    sessions: sessionmaker[Session],
    job_id: uuid.UUID,
    console: Console,
    poll: float = 1.0,
    *,
    expected: int | None = None,
) -> results.Progress:
    """A live progress bar (done, failed, total, images/s, time left) until the job is done.

    With ``expected`` (a ``--rescore`` pass, whose job counts are complete from the start), it
    waits for ``expected`` results of the job's current pass instead.
    """
    columns = (
        TextColumn("[bold]scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("{task.fields[rate]:.1f} img/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("scan", total=None, failed=0, rate=0.0)
        t0, done0, hinted = time.monotonic(), None, False
        while True:
            try:
                with sessions.begin() as session:
                    job = session.get(Job, job_id)
                    assert job is not None
                    # Always refreshed: the job row's counters and done state stay current.
                    state = results.refresh_job(session, job)
                    if expected is not None:
                        state = pass_progress(session, job, expected)
            except OperationalError:
                # The database is away for a moment; the workers back off too. Keep waiting.
                bar.console.print("[yellow]database unreachable; still waiting[/yellow]")
                time.sleep(poll * 5)
                continue
            if done0 is None:
                done0 = state.done
            elapsed = time.monotonic() - t0
            if state.done == done0 and elapsed > STALL_HINT_SECONDS and not hinted:
                hinted = True
                bar.console.print(
                    f"[yellow]no progress for {STALL_HINT_SECONDS} s: is a worker running on "
                    "this queue? (hemoscan worker; hemoscan flower shows the workers)[/yellow]"
                )
            rate = (state.done - done0) / elapsed if elapsed > 0 else 0.0
            bar.update(
                task, total=state.total, completed=state.done, failed=state.failed, rate=rate
            )
            if state.complete:
                return state
            time.sleep(poll)
