"""Licenses benchmark: a sync of 10,000 companies with 20,000 licenses next to the same sync
without licenses, a re-sync after 1% of the licenses changed, then the usage report of a month
(31 daily snapshots of those licenses) through GraphQL and as CSV.

    python -m tests.bench.licenses [--companies 10000] [--licenses-per-company 2]
                                   [--changed 0.01] [--database-url postgres://...]

The sync without licenses is the same sync with the license read turned off (the tree alone,
as before licenses). Sync figures read like `tests.bench.sync`'s: "own" is wall time minus the
time an upstream request was in flight (the simulator runs on a thread of its own), "apply" the
one transaction that writes the tree and the licenses, with its SQL statements. The report is
served by the real app in this process (httpx over ASGI): every page of `usageReport(first:
100)`, its `totalCount`, and `GET /reports/usage.csv` read to the end, each with its time and
the peak of Python memory allocated meanwhile (tracemalloc), next to the process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import random
import resource
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx

from server.app import create_app
from server.cli import apply_migrations
from server.domain import accounts, sync, upstream_connection, usage
from server.domain.instances import create_instance
from server.models import Account, UsageLine
from server.models.enums import Service
from server.settings import Settings
from server.upstream.simulator import DEFAULT_PASSWORD, DEFAULT_USERNAME, UpstreamTree
from server.upstream.simulator.license_book import EXPIRED, PRODUCTS, SUSPENDED, LicenseBook
from tests.bench.harness import BENCH_SECRET, database
from tests.bench.sync import Measure, UpstreamInThread, measured_sync

MONTH = "2026-10"
PASSWORD = "bench password 0123456789"
TOTAL = "query($month: String!) { usageReport(month: $month, first: 0) { totalCount } }"
REPORT = """query($month: String!, $after: String) {
  usageReport(month: $month, first: 100, after: $after) {
  pageInfo { hasNextPage endCursor }
  edges { node { company { id name } productCode seatDays averageSeats peakSeats } } } }"""


def line(measure: Measure) -> str:
    licenses = measure.run
    return (
        f"{measure.line()} | licenses seen {licenses.licenses_seen:,}, created "
        f"{licenses.licenses_created:,}, updated {licenses.licenses_updated:,}, removed "
        f"{licenses.licenses_removed:,}"
    )


def change_licenses(tree: UpstreamTree, fraction: float, seed: int) -> int:
    """Quantity and usage changes, suspensions, expiries, removals and new licenses."""
    rng = random.Random(seed)
    book = tree.licenses
    keys = rng.sample(sorted(book.licenses), max(5, round(len(book) * fraction)))
    for index, key in enumerate(keys):
        kind = index % 6
        if kind == 0:
            book.set_quantity(key, book.licenses[key]["quantity"] + 5)
        elif kind == 1:
            book.set_usage(key, book.licenses[key]["quantity"] + 3)  # overused
        elif kind == 2:
            book.set_state(key, SUSPENDED)
        elif kind == 3:
            book.set_state(key, EXPIRED)
        elif kind == 4:
            book.remove(key)
        else:
            code, name = rng.choice(PRODUCTS)
            book.add(book.licenses[key]["companyId"], code, name, 10, 4)
    return len(keys)


async def measured(
    call: Callable[[], Awaitable[Any]],
) -> tuple[Any, float, int]:
    """(result, seconds, peak bytes Python allocated during the call)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = await call()
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, seconds, peak


async def report(http: httpx.AsyncClient, token: str) -> None:
    headers = {"authorization": f"Bearer {token}"}

    async def every_page() -> tuple[int, int, list[float]]:
        rows, pages, times, after = 0, 0, [], None
        while True:
            started = time.perf_counter()
            answer = await http.post(
                "/graphql",
                json={"query": REPORT, "variables": {"month": MONTH, "after": after}},
                headers=headers,
            )
            times.append(time.perf_counter() - started)
            page = answer.json()["data"]["usageReport"]
            rows += len(page["edges"])
            pages += 1
            if not page["pageInfo"]["hasNextPage"]:
                return rows, pages, times
            after = page["pageInfo"]["endCursor"]

    async def total() -> int:
        answer = await http.post(
            "/graphql",
            json={"query": TOTAL, "variables": {"month": MONTH}},
            headers=headers,
        )
        return int(answer.json()["data"]["usageReport"]["totalCount"])

    async def csv() -> tuple[int, int]:
        size, lines = 0, 0
        async with http.stream("GET", f"/reports/usage.csv?month={MONTH}", headers=headers) as r:
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n")
        return size, lines

    (rows, pages, times), seconds, peak = await measured(every_page)
    times.sort()
    print(
        f"usageReport  {rows:,} rows in {pages} pages of 100: {seconds:6.2f} s, page p50 "
        f"{times[len(times) // 2] * 1000:.1f} ms, p99 {times[int(len(times) * 0.99)] * 1000:.1f} "
        f"ms | Python peak {peak / 2**20:.1f} MiB"
    )
    count, seconds, peak = await measured(total)
    print(f"totalCount   {count:,}: {seconds * 1000:.1f} ms | Python peak {peak / 2**20:.1f} MiB")
    (size, lines), seconds, peak = await measured(csv)
    print(
        f"usage.csv    {lines - 1:,} rows, {size / 2**20:.1f} MiB: {seconds:6.2f} s | Python "
        f"peak {peak / 2**20:.1f} MiB while streaming"
    )


async def bench(
    settings: Settings, companies: int, per_company: float, fraction: float, seed: int
) -> None:
    await apply_migrations(settings)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        email = f"bench-licenses-{uuid.uuid4().hex[:8]}@example.test"
        account = await accounts.create_account(email, PASSWORD, [Service.EBA])
        instance = await create_instance(account.id, Service.EBA, "Licenses bench")
        bare = await create_instance(
            (await Account.create(email=f"bare-{email}", password_hash="!", services="EBA")).id,
            Service.EBA,
            "Licenses bench, no licenses",
        )
        tree = UpstreamTree.generate(companies, seed)
        account_ids = [c["publicId"] for c in tree.subtree(tree.account_id)]
        tree.licenses = LicenseBook.generate(account_ids, seed, per_company)
        with UpstreamInThread(tree) as upstream, licenses_not_read():
            await upstream_connection.connect_msp_administrator(
                None, bare.id, upstream.url, DEFAULT_USERNAME, DEFAULT_PASSWORD, settings
            )
            without = await measured_sync("no lic.", bare.id, settings, upstream)
        with UpstreamInThread(tree) as upstream:
            await upstream_connection.connect_msp_administrator(
                None, instance.id, upstream.url, DEFAULT_USERNAME, DEFAULT_PASSWORD, settings
            )
            first = await measured_sync("licenses", instance.id, settings, upstream)
            changed = change_licenses(tree, fraction, seed)
            again = await measured_sync("re-sync", instance.id, settings, upstream)
        backend = "PostgreSQL" if settings.is_postgres else "SQLite"
        print(
            f"sync of {companies:,} companies on {backend}, {len(tree.licenses):,} licenses; "
            f"{changed} licenses changed before the re-sync"
        )
        print(line(without))
        print(line(first))
        print(line(again))
        print(f"own time the licenses add to a first sync: {first.own - without.own:+.2f} s")

        start, _ = usage.parse_month(MONTH)
        started = time.perf_counter()
        for day in range(31):
            moment = dt.datetime(start.year, start.month, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
                days=day
            )
            async with db_transaction():
                await usage.record_snapshot(instance.id, moment)
        lines = await UsageLine.filter(instance_id=instance.id).count()
        print(
            f"31 daily snapshots of {MONTH}: {time.perf_counter() - started:.2f} s, "
            f"{lines:,} ledger rows"
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            answer = await http.post(
                "/graphql",
                json={
                    "query": "mutation($i: LoginInput!) { login(input: $i) { token } }",
                    "variables": {"i": {"email": email, "password": PASSWORD, "via": "EBA"}},
                },
            )
            await report(http, answer.json()["data"]["login"]["token"])
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"process peak RSS over the whole run: {peak_rss:.0f} MiB")


@contextlib.contextmanager
def licenses_not_read() -> Iterator[None]:
    """The sync as it was before licenses: the tree alone (no Search/Licenses, no snapshot)."""
    original = sync.fetch_licenses

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    sync.fetch_licenses = nothing  # type: ignore[assignment]
    try:
        yield
    finally:
        sync.fetch_licenses = original


def db_transaction() -> Any:
    from tortoise.transactions import in_transaction

    return in_transaction()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=10_000)
    parser.add_argument("--licenses-per-company", type=float, default=2.0)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of licenses")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    args = parser.parse_args()
    with database(args.database_url) as url:
        settings = Settings(
            database_url=url,
            secret_key=BENCH_SECRET,
            upstream_allowed_hosts=("127.0.0.1",),
            sync_interval=0,
        )
        asyncio.run(
            bench(settings, args.companies, args.licenses_per_company, args.changed, args.seed)
        )


if __name__ == "__main__":
    main()
