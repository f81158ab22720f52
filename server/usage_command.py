"""`msp-console usage-report --month YYYY-MM [--instance ID] [--output F]`: the month's usage
report of a whole instance as CSV (the rows of `GET /reports/usage.csv` for its owner), to a
file or standard output, streamed a page at a time."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from tortoise import Tortoise

from server.domain import usage
from server.domain.access import Scope
from server.domain.errors import InvalidInput
from server.domain.groups import all_group_path
from server.models import Instance, db
from server.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--month", required=True, help="the month, YYYY-MM (UTC days)")
    parser.add_argument(
        "--instance", type=int, metavar="ID", help="the instance (needed when there are several)"
    )
    parser.add_argument("--output", metavar="F", help="the file to write (default: stdout)")


@contextlib.contextmanager
def _opened(output: str | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        return
    with Path(output).open("w", encoding="utf-8", newline="") as file:
        yield file


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """0 when the report was written; 2 for a bad month or instance."""
    try:
        usage.parse_month(args.month)
    except InvalidInput as exc:
        print(f"usage-report: {exc.message}", file=sys.stderr)
        return 2
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    try:
        scope = await _instance_scope(args.instance)
        if isinstance(scope, str):
            print(f"usage-report: {scope}", file=sys.stderr)
            return 2
        with _opened(args.output) as out:
            async for chunk in usage.csv_chunks(scope, args.month):
                out.write(chunk)
    finally:
        await Tortoise.close_connections()
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


async def _instance_scope(instance_id: int | None) -> Scope | str:
    """The whole instance, as its owner sees it; a message when there is no such instance."""
    if instance_id is None:
        ids = [instance.id for instance in await Instance.all().order_by("id").only("id")]
        if len(ids) != 1:
            listed = ", ".join(map(str, ids[:20])) or "none"
            return f"name the instance with --instance (instances: {listed})"
        instance_id = ids[0]
    path = await all_group_path(instance_id)
    if path is None:
        return f"no instance {instance_id}"
    return Scope.for_owner(instance_id, 0, path)
