"""Run a scan with a progress display: a bar over batches in the embedded mode, and a live
bar over the database's counts with ``--wait`` in the distributed mode (``wait_for_job``, the
one place besides the producer that keeps the job row's counters current)."""

from __future__ import annotations

import time
import uuid

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hemoscan.settings import Settings
from producer.plan import ScanPlan, check_plan
from producer.scan import ScanOutcome, run_scan
from schema import reports, results
from schema.models import Job
from schema.results import Progress as JobProgress

STALL_HINT_SECONDS = 30


def _job_line(outcome: ScanOutcome, plan: ScanPlan) -> str:
    shown = "new" if outcome.created else "resumed"
    if plan.rescore and not outcome.created:
        shown += f", rescoring as pass {outcome.pass_number}"
    return f"job [bold]{outcome.job_name}[/bold] ({shown})"


def scan_with_progress(
    settings: Settings, plan: ScanPlan, console: Console, wait: bool = False
) -> tuple[ScanOutcome, JobProgress | None]:
    from schema.db import session_factory

    sessions = session_factory(settings.effective_database_url)
    if settings.distributed:
        import uuid

        def on_start(o: ScanOutcome) -> None:
            console.print(_job_line(o, plan))

        outcome = run_scan(settings, plan, on_start=on_start)
        console.print(
            f"sent {outcome.sent} of {outcome.listed} listed images in {outcome.batches} "
            f"batches to queue '{settings.queue}' in {outcome.seconds:.1f}s"
        )
        if not wait:
            return outcome, None
        if outcome.listed == 0:  # nothing to wait for (the warning above says why)
            return outcome, None
        # A rescore pass over a job with results: its counts are complete, so wait for the
        # rows of this pass instead.
        rescoring = plan.rescore and not outcome.created and outcome.sent
        state = wait_for_job(
            sessions,
            uuid.UUID(outcome.job_id),
            console,
            expected=outcome.sent if rescoring else None,
        )
        console.print(
            f"job done: {state.scored} scored ({state.positives} flagged), {state.failed} failed"
        )
        return outcome, state

    # Arguments first, the model second: a missing folder or manifest fails in a moment,
    # before TensorFlow loads (run_scan checks them again, cheaply).
    check_plan(plan, settings)
    from workers.inprocess import InProcessSender

    sender = InProcessSender(settings, on_load=lambda note: console.print(f"[dim]{note}[/dim]"))
    columns = (
        TextColumn("[bold]scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("scan", total=None, failed=0)
        failed = 0

        def on_batch(n: int, summary: dict | None) -> None:  # type: ignore[type-arg]
            nonlocal failed
            failed += int((summary or {}).get("failed", 0))
            bar.update(task, advance=n, failed=failed)

        def on_start(o: ScanOutcome) -> None:
            console.print(_job_line(o, plan))

        outcome = run_scan(settings, plan, sender=sender, on_batch=on_batch, on_start=on_start)
        bar.update(task, total=outcome.sent)
    import uuid

    from schema import results

    with sessions.begin() as session:
        state = results.progress(session, uuid.UUID(outcome.job_id))
    console.print(
        f"scored {outcome.sent} image(s) in {outcome.batches} batches in {outcome.seconds:.1f}s; "
        f"job totals: {state.scored} scored ({state.positives} flagged), {state.failed} failed"
    )
    return outcome, state


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
                        state = reports.pass_progress(session, job, expected)
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
