"""Run a scan with a progress display: a bar over batches in the embedded mode, and a live
bar over the database's counts with ``--wait`` in the distributed mode."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hemoscan.settings import Settings
from producer.scan import ScanOutcome, ScanPlan, run_scan
from schema.results import Progress as JobProgress


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

        from producer.report import wait_for_job

        def on_start(o: ScanOutcome) -> None:
            console.print(_job_line(o, plan))

        outcome = run_scan(settings, plan, on_start=on_start)
        console.print(
            f"sent {outcome.sent} of {outcome.listed} listed images in {outcome.batches} "
            f"batches to queue '{settings.queue}' in {outcome.seconds:.1f}s"
        )
        if not wait:
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

    from producer.senders import InProcessSender

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
