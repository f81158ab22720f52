"""`msp-console sync [--instance ID]`: sync now, with a progress bar, and print the counters."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from tortoise import Tortoise

from server.domain import sync, sync_runs
from server.domain.errors import NotFound, UpstreamNotConnected
from server.events import create_event_bus
from server.models import Instance, SyncRun, db
from server.models.enums import SyncState
from server.settings import Settings

COUNTERS = ("companies_seen", "created", "updated", "moved", "unlinked", "relinked")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instance",
        type=int,
        metavar="ID",
        help="the instance to sync (default: every instance connected to an MSP Administrator)",
    )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Sync the instance(s); 0 when every run succeeded, 1 otherwise."""
    console = Console()
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    try:
        if args.instance is not None:
            ids = [args.instance]
        else:
            ids = list(
                await Instance.filter(upstream_url__not_isnull=True)
                .order_by("id")
                .values_list("id", flat=True)
            )
        if not ids:
            console.print("no instance is connected to an MSP Administrator")
            return 1
        runs = [await _sync_one(console, instance_id, settings) for instance_id in ids]
    finally:
        await Tortoise.close_connections()
    finished = [r for r in runs if r is not None]
    for each in finished:
        console.print(_summary(each))
    return 0 if finished and all(r.state == SyncState.SUCCEEDED for r in runs if r) else 1


async def _sync_one(console: Console, instance_id: int, settings: Settings) -> SyncRun | None:
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]instance {task.fields[instance]}[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} companies"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("connecting", total=None, instance=instance_id)

        def show(run: SyncRun) -> None:
            phase = {
                sync.FETCH: "fetching the tree",
                sync.LICENSES: "fetching the licenses",
                sync.APPLY: "applying the changes",
            }
            description = phase.get(run.phase or "", run.state.value.lower())
            if run.state in sync_runs.FINISHED:
                description = run.state.value.lower()
                progress.update(task, total=max(run.companies_seen, 1))
            progress.update(task, description=description, completed=run.companies_seen)

        try:
            # Published through the database on PostgreSQL: the server's subscribers see the run.
            bus = create_event_bus(settings.database_url)
            result = await sync_runs.sync_now(
                instance_id, settings, trigger="cli", on_progress=show, bus=bus
            )
        except UpstreamNotConnected as exc:
            progress.update(task, description=f"[red]{exc.message}")
            return None
        except NotFound:
            progress.update(task, description="[red]no such instance")
            return None
    if result.state == SyncState.FAILED:
        console.print(f"[red]instance {instance_id}: sync failed: {result.error}")
    return result


def _summary(run: SyncRun) -> str:
    seconds = (
        f" in {(run.finished_at - run.started_at).total_seconds():.1f} s"
        if run.finished_at and run.started_at
        else ""
    )
    counters = ", ".join(f"{getattr(run, c):,} {c.replace('companies_', '')}" for c in COUNTERS)
    colour = "green" if run.state == SyncState.SUCCEEDED else "red"
    return (
        f"instance {run.instance_id} run {run.id}: "
        f"[{colour}]{run.state.value}[/]{seconds}: {counters}"
    )
