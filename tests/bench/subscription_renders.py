"""What rendering one subscription event costs per subscriber, measured in one process.

    python -m tests.bench.subscription_renders [--subscribers 1000] [--events 20]

The `customerStatusChanged` document of `tests.bench.subscriptions`, executed for every
subscriber of one worker the way graphql-core maps each event of a subscription
(`build_per_event_executor(row).execute_operation(False)`), with the real schema: without the
execution shortcuts, with them and a row made for each subscriber, and with them and the one
shared row a batch of events hands to all (what `server/api/subscriptions.py` does). Reports
the CPU time per event, the best of three rounds of `--events` events; the subscriptions live
on from round to round, as they do between events. Nothing else of a delivery (Strawberry's
result handling, the websocket) is in it: `tests.bench.subscriptions` measures the whole.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from tortoise import Tortoise

from graphql import parse
from server.api.companies import Company
from server.api.execution import share
from server.api.schema import build_schema
from server.models import Company as CompanyModel
from server.models import db
from server.models.enums import CompanyType
from server.settings import Settings
from tests.bench.subscriptions import SUBSCRIPTION


def cpu_per_event(
    executors: list[Any], rows: Callable[[], Callable[[], Any]], events: int
) -> float:
    """Seconds of CPU one event costs all `executors`, the best of three rounds; `rows()` is
    called once per event and gives what gives each subscriber its row."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(events):
            row = rows()
            for executor in executors:
                result = executor.build_per_event_executor(row()).execute_operation(False)
                if result.errors:
                    raise RuntimeError(result.errors)
        best = min(best, (time.process_time() - started) / events)
    return best


async def run(subscribers: int, events: int) -> None:
    await Tortoise.init(config=db.tortoise_config("sqlite://:memory:"))  # models, no table
    model = CompanyModel(
        id=7,
        instance_id=1,
        public_id="p",
        name="Customer 0001",
        type=CompanyType.CUSTOMER,
        depth=3,
        path="1.2.3",
        read_only=False,
        upstream_status=1,
    )
    document = parse(SUBSCRIPTION)

    def row_for_each() -> Callable[[], Any]:
        return lambda: Company.of(model)

    def one_shared_row() -> Callable[[], Any]:
        row = share(Company.of(model))
        return lambda: row

    cases = [
        ("without the shortcuts", False, row_for_each),
        ("with them, a row for each", True, row_for_each),
        ("with them, one shared row", True, one_shared_row),
    ]
    try:
        for label, shortcuts, rows in cases:
            schema = build_schema(Settings(execution_shortcuts=shortcuts))
            executor = schema.execution_context_class
            executors = [executor.build(schema._schema, document) for _ in range(subscribers)]
            spent = cpu_per_event(executors, rows, events)
            print(
                f"{label:27s} {spent * 1000:6.1f} ms CPU per event for {subscribers} "
                f"subscribers, {spent / subscribers * 1e6:5.1f} us each"
            )
    finally:
        await Tortoise.close_connections()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.subscription_renders")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.subscribers, args.events))


if __name__ == "__main__":
    main()
