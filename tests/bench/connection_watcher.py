"""Page latency while the connection watcher catches up, through a real uvicorn.

    python -m tests.bench.connection_watcher [--every 2] [--seconds 10] [--concurrency 8]
                                             [--database-url sqlite:////tmp/big.db]
                                             [--companies 10000] [--computers 100000]

Reuses the instance `tests.bench.read_api` left in `--database-url` (build one there first:
`python -m tests.bench.read_api --companies 100000 --computers 1000000 --seconds 1
--database-url ...`, about 3 minutes), or builds one of `--companies` and `--computers` when
the database holds none. Each run starts from the same state: every announcement settled, then
every `--every`-th computer made stale, half of them gone quiet (a check-in two days old,
announced CONNECTED) and half come back (checked in now, announced NOT_CONNECTED), as after
the console was down. Then serves it with `msp-console serve`, whose connection watcher starts
announcing at once, and measures the Managed Customers page (owner, first 50) in a closed loop
while it does: p50, p90 and p99; then how long the catch-up took, and the same page once it is
over.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

import aiohttp
from tortoise import Tortoise

from server.cli import apply_migrations
from server.domain.connections import connection_status_sql
from server.models import db
from server.settings import Settings
from tests.bench import read_api
from tests.bench.harness import (
    BENCH_SECRET,
    Load,
    closed_loop,
    console,
    database,
    graphql,
    login,
    percentile,
)

POLL = 1.0  # seconds between looks at what is left to announce


async def prepare(settings: Settings, args: argparse.Namespace) -> str:
    """The owner's email of the bench instance (built if there is none), with the stale
    computers marked."""
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    try:
        email = await db.fetch_value(
            "SELECT email FROM account WHERE email LIKE 'bench-%' ORDER BY id DESC LIMIT 1"
        )
    finally:
        await Tortoise.close_connections()
    if email is None:
        email = (await read_api.build(settings, args.companies, args.computers))["email"]
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    try:
        started = time.perf_counter()
        now = datetime.now(UTC)
        case, params = connection_status_sql("", now, settings)
        settled = await db.execute(
            f"UPDATE computer SET announced_status = {case} WHERE announced_status <> {case}",
            [*params, *params],
        )
        quiet = await db.execute(
            "UPDATE computer SET last_connected_at = ?, announced_status = 'CONNECTED' "
            "WHERE id % ? = 0",
            [now - timedelta(days=2), 2 * args.every],
        )
        back = await db.execute(
            "UPDATE computer SET last_connected_at = ?, announced_status = 'NOT_CONNECTED' "
            "WHERE id % ? = ?",
            [now, 2 * args.every, args.every],
        )
        if db.is_postgres():
            await db.connection().execute_script("VACUUM ANALYZE computer")
        else:
            await db.refresh_statistics()
        print(
            f"settled {settled} announcements, then made {quiet + back} computers stale "
            f"({quiet} gone quiet, {back} come back) in {time.perf_counter() - started:.1f} s"
        )
    finally:
        await Tortoise.close_connections()
    return str(email)


async def stale_left(settings: Settings) -> int:
    """How many computers the watcher has yet to announce (a whole-table count, so it reads
    the same before and after a change to the watcher's own statements)."""
    case, params = connection_status_sql("", datetime.now(UTC), settings)
    sql = f"SELECT COUNT(*) FROM computer WHERE announced_status <> {case}"
    return int(await db.fetch_value(sql, params))


async def measure(
    url: str, settings: Settings, email: str, seconds: float, concurrency: int
) -> None:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        token = await login(session, url, email, read_api.PASSWORD)

    async def page(session: aiohttp.ClientSession, _n: int) -> bool:
        body = await graphql(session, url, token, read_api.MANAGED_CUSTOMERS, {"first": 50})
        return "errors" not in body and bool(body.get("data"))

    name = "Managed Customers page (owner)"
    during = await closed_loop(name, page, concurrency=concurrency, seconds=seconds)
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    try:
        left = left_after_window = await stale_left(settings)
        while left > 0:
            await asyncio.sleep(POLL)
            left = await stale_left(settings)
    finally:
        await Tortoise.close_connections()
    caught_up = time.perf_counter() - started
    quiet = await closed_loop(name, page, concurrency=concurrency, seconds=seconds)
    print(line(during, "while catching up"))
    print(
        f"caught up {caught_up:.1f} s after the console listened; {left_after_window} "
        "computers were still to announce when the window ended (0: the window outlasted the "
        "catch-up: lower --every or --seconds)"
    )
    print(line(quiet, "afterwards"))


def line(load: Load, when: str) -> str:
    p50, p90, p99 = (percentile(load.latencies, p) * 1000 for p in (50, 90, 99))
    return (
        f"{load.name}, {when:<18} {load.rate:7.1f} req/s   p50 {p50:7.1f} ms   "
        f"p90 {p90:7.1f} ms   p99 {p99:7.1f} ms   errors {load.errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=2, help="make every n-th computer stale")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--companies", type=int, default=10_000, help="when building")
    parser.add_argument("--computers", type=int, default=100_000, help="when building")
    args = parser.parse_args()
    with database(args.database_url) as url:
        settings = Settings(
            database_url=url, secret_key=BENCH_SECRET, upstream_allowed_hosts=("127.0.0.1",)
        )
        asyncio.run(apply_migrations(settings))
        email = asyncio.run(prepare(settings, args))
        with console(url) as base:
            asyncio.run(measure(base, settings, email, args.seconds, args.concurrency))


if __name__ == "__main__":
    main()
