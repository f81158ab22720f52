"""Read API benchmark on a large instance, through a real uvicorn.

    python -m tests.bench.read_api [--companies 10000] [--computers 100000] [--seconds 10]
                                   [--concurrency 8] [--database-url postgres://...]

Builds the instance the way a console gets one: a real sync from the MSP Administrator
simulator (10,000 companies), then computers spread over the customers and customers in every
status (written directly, then `counters.recount`, as `msp-console recount` would), then
`VACUUM ANALYZE` on PostgreSQL; prints how long each part took. Sizes up to 100,000 companies
and 1,000,000 computers on either database. Serves it with `msp-console serve` in a
subprocess and measures, per scenario:
requests per second, p50 and p99 latency, and SQL statements per request (counted in-process).
Scenarios: the Managed Customers page (first 50, each customer with its parent and its group)
and a `descendants` page of 100, each as the owner (from the top company) and as a user with 50
permission sets (from the granted company with the largest subtree); a `computers` page of 50
(with each computer's group and the total) as both, and of the never-connected ones (1 in 13) as
the owner; and a whole-tree `descendants` walk (pages of 100 from the top company to the end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from tortoise import Tortoise

from server.app import create_app
from server.cli import apply_migrations
from server.domain import (
    accounts,
    counters,
    global_ids,
    secrets,
    sync_runs,
    tree_paths,
    upstream_connection,
)
from server.domain.access import load_scope
from server.domain.connections import connection_status
from server.domain.instances import create_instance
from server.models import Company, PermissionSet, StaticGroup, User, db
from server.models.enums import CompanyType, GroupKind, Service
from server.settings import Settings
from server.upstream.simulator import Simulator, UpstreamTree
from tests.bench.harness import BENCH_SECRET, closed_loop, console, database, graphql

OPERATIONS = Path(__file__).resolve().parents[2] / "graphql" / "operations"
MANAGED_CUSTOMERS = (OPERATIONS / "ManagedCustomers.graphql").read_text()
DESCENDANTS = (OPERATIONS / "Descendants.graphql").read_text()
COMPUTERS = """query($first: Int!, $status: [ConnectionStatus!]) {
  computers(first: $first, status: $status) {
    totalCount edges { node { id name connectionStatus group { id name } } }
  } }"""
PASSWORD = "bench password 1"
SCOPED_SETS = 50
IN_PROCESS_RUNS = 40


async def build(settings: Settings, companies: int, computers: int) -> dict:
    """The instance: synced tree, computers, statuses, and a user with 50 permission sets."""
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    try:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.test"
        account = await accounts.create_account(email, PASSWORD, [Service.EBA, Service.EMA2])
        instance = await create_instance(account.id, Service.EBA, "Bench")
        owner = await User.get(account_id=account.id).prefetch_related("home_group")
        scope = await load_scope(instance.id, owner.id, True, owner.home_group.path)
        upstream = UpstreamTree.generate(companies, seed=11)
        async with Simulator(upstream) as simulator:
            await upstream_connection.connect_msp_administrator(
                scope, instance.id, simulator.url, "demo@msp.example", "demo", settings
            )
            started = time.perf_counter()
            run = await sync_runs.sync_now(instance.id, settings, trigger="bench")
            print(f"synced {run.companies_seen} companies in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        customers = await Company.filter(
            instance_id=instance.id, type=CompanyType.CUSTOMER
        ).values_list("id", flat=True)
        await _statuses(instance.id, list(customers))
        await counters.recount(instance.id)
        print(f"statuses and counters in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        await _computers(settings, instance.id, list(customers), computers)
        await counters.recount(instance.id, count_held=True)  # written directly
        print(f"{computers} computers in {time.perf_counter() - started:.1f} s")
        scoped_email, scoped_top = await _scoped_user(instance.id, owner.id)
        started = time.perf_counter()
        if db.is_postgres():
            await db.connection().execute_script("VACUUM ANALYZE")
        else:
            await db.refresh_statistics()
        print(f"statistics in {time.perf_counter() - started:.1f} s")
        top = await Company.filter(instance_id=instance.id, read_only=False).order_by("depth")
        top = top[0] if top else None
        return {
            "email": email,
            "scoped_email": scoped_email,
            "top": top.id if top else None,
            "scoped_top": scoped_top,
        }
    finally:
        await Tortoise.close_connections()


async def _statuses(instance_id: int, customers: list[int]) -> None:
    rng = random.Random(3)
    done = [c for c in customers if rng.random() < 0.45]
    taken = set(done)  # once: a set per customer made this quadratic
    skipped = [c for c in customers if c not in taken and rng.random() < 0.2]
    unlinked = rng.sample(customers, max(1, len(customers) // 20))
    for ids, sql, params in (
        (done, "UPDATE company SET setup_state = 'done' WHERE id IN ", []),
        (skipped, "UPDATE company SET setup_state = 'skipped' WHERE id IN ", []),
        (
            unlinked,
            "UPDATE company SET unlinked_at = ?, unlink_reason = 'user' WHERE id IN ",
            [datetime.now(UTC)],
        ),
    ):
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            await db.execute(sql + f"({', '.join('?' for _ in chunk)})", [*params, *chunk])


async def _computers(
    settings: Settings, instance_id: int, customers: list[int], count: int
) -> None:
    # every company group of the instance, without an IN list of 50,000 customers (asyncpg
    # takes at most 32,767 parameters)
    groups = dict(
        await StaticGroup.filter(instance_id=instance_id, kind=GroupKind.COMPANY).values_list(
            "company_id", "id"
        )
    )
    rng = random.Random(5)
    now = datetime.now(UTC)
    rows = []
    for n in range(count):
        company = customers[n % len(customers)]
        name = f"pc-{n:06d}"
        seen = None if n % 13 == 0 else now - timedelta(seconds=rng.choice([5, 90, 7200, 200000]))
        rows.append(
            (
                instance_id,
                groups[company],
                company,
                name,
                tree_paths.sort_name(name),
                f"hw-{n}",
                "Windows 11 Pro",
                "11.1",
                now,
                seen,
                # announced as it is, so the server does not start by announcing 100,000
                connection_status(seen, now, settings).value,
            )
        )
    sql = (
        "INSERT INTO computer (instance_id, group_id, company_id, name, sort_name, hardware_id,"
        " os, agent_version, enrolled_at, last_connected_at, announced_status) VALUES "
    )
    for i in range(0, len(rows), 1000):
        chunk = rows[i : i + 1000]
        marks = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" for _ in chunk)
        await db.execute(sql + marks, [v for row in chunk for v in row])


async def _scoped_user(instance_id: int, owner_id: int) -> tuple[str, int]:
    """A native user whose 50 permission sets each cover one MSP-level group or customer; and
    the granted company with the largest subtree (where its descendants page starts)."""
    all_group = await StaticGroup.get(instance_id=instance_id, kind=GroupKind.ALL)
    targets = (
        await StaticGroup.filter(instance_id=instance_id, kind=GroupKind.COMPANY)
        .order_by("depth", "sort_key")
        .limit(SCOPED_SETS + 5)
    )
    email = f"scoped-{uuid.uuid4().hex[:8]}@example.test"
    user = await User.create(
        instance_id=instance_id,
        email=email,
        password_hash=await secrets.hash_password(PASSWORD),
        home_group=all_group,
        created_by_id=owner_id,
    )
    for n, group in enumerate(targets[-SCOPED_SETS:]):
        permission_set = await PermissionSet.create(
            instance_id=instance_id,
            name=f"bench set {n}",
            levels={"COMPANIES": "READ", "COMPUTERS": "READ", "GROUPS": "READ"},
        )
        await permission_set.groups.add(group)
        await user.permission_sets.add(permission_set)
    granted = [g.id for g in targets[-SCOPED_SETS:]]
    marks = ", ".join("?" for _ in granted)
    # companies and computers (not seats), so the pick stays the one it was before seats counted
    held = [*counters.TYPE_COLUMNS.values(), *counters.STATUS_COLUMNS.values(), counters.COMPUTERS]
    largest = await db.fetch(
        f"SELECT s.group_id FROM subtree_count s WHERE s.group_id IN ({marks}) "
        f"ORDER BY {' + '.join(held)} DESC LIMIT 1",
        granted,
    )
    group = next(g for g in targets if g.id == largest[0]["group_id"])
    return email, group.company_id  # type: ignore[attr-defined]


async def count_statements(
    settings: Settings, prepared: dict
) -> tuple[dict[str, int], dict[str, tuple[float, float]]]:
    """SQL statements per request of each scenario, and its median and 90th percentile time
    one request at a time, through the app in-process."""
    app = create_app(settings)
    counts: dict[str, int] = {}
    latencies: dict[str, tuple[float, float]] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            tokens = {}
            for who, email, via in (
                ("owner", prepared["email"], "EBA"),
                ("scoped", prepared["scoped_email"], None),
            ):
                service = Service(via) if via else None
                tokens[who], _ = await accounts.login(
                    email, PASSWORD, service, settings.session_ttl
                )
            for name, token, query, variables in scenarios(prepared, tokens):
                with db.count_statements() as counter:
                    await http.post(
                        "/graphql",
                        json={"query": query, "variables": variables},
                        headers={"authorization": f"Bearer {token}"},
                    )
                counts[name] = counter.count
                # one request at a time, in-process: the page's own cost, without the queueing
                # a closed loop on a shared machine adds
                timings = []
                for _ in range(IN_PROCESS_RUNS):
                    started = time.perf_counter()
                    response = await http.post(
                        "/graphql",
                        json={"query": query, "variables": variables},
                        headers={"authorization": f"Bearer {token}"},
                    )
                    timings.append(time.perf_counter() - started)
                    assert "errors" not in response.json(), response.text[:500]
                timings.sort()
                latencies[name] = (timings[len(timings) // 2], timings[int(len(timings) * 0.9)])
    return counts, latencies


def scenarios(prepared: dict, tokens: dict) -> list[tuple[str, str, str, dict]]:
    top = global_ids.encode("Company", prepared["top"])
    scoped_top = global_ids.encode("Company", prepared["scoped_top"])
    return [
        ("Managed Customers page (owner)", tokens["owner"], MANAGED_CUSTOMERS, {"first": 50}),
        (
            "Managed Customers page (50 permission sets)",
            tokens["scoped"],
            MANAGED_CUSTOMERS,
            {"first": 50},
        ),
        (
            "descendants page of 100 (owner)",
            tokens["owner"],
            DESCENDANTS,
            {"id": top, "first": 100},
        ),
        (
            "descendants page of 100 (50 permission sets)",
            tokens["scoped"],
            DESCENDANTS,
            {"id": scoped_top, "first": 100},
        ),
        ("computers page of 50 (owner)", tokens["owner"], COMPUTERS, {"first": 50}),
        (
            "computers page of 50 (50 permission sets)",
            tokens["scoped"],
            COMPUTERS,
            {"first": 50},
        ),
        (
            "never-connected computers page of 50 (owner)",
            tokens["owner"],
            COMPUTERS,
            {"first": 50, "status": ["NEVER_CONNECTED"]},
        ),
    ]


async def measure(url: str, prepared: dict, seconds: float, concurrency: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        tokens = {}
        for who, email, via in (
            ("owner", prepared["email"], "EBA"),
            ("scoped", prepared["scoped_email"], None),
        ):
            body = await graphql(
                session,
                url,
                None,
                "mutation($i: LoginInput!) { login(input: $i) { token } }",
                {"i": {"email": email, "password": PASSWORD, "via": via}},
            )
            tokens[who] = body["data"]["login"]["token"]
    results = []
    for name, token, query, variables in scenarios(prepared, tokens):

        async def one(session, _n, token=token, query=query, variables=variables):
            body = await graphql(session, url, token, query, variables)
            return "errors" not in body and bool(body.get("data"))

        results.append(await closed_loop(name, one, concurrency=concurrency, seconds=seconds))

    top = global_ids.encode("Company", prepared["top"])
    cursors: dict[int, str | None] = {}
    walks: list[float] = []
    walk_started: dict[int, float] = {}

    async def page(session, n, token=tokens["owner"]):
        worker = n // 1_000_000
        walk_started.setdefault(worker, time.perf_counter())
        body = await graphql(
            session,
            url,
            token,
            DESCENDANTS,
            {"id": top, "first": 100, "after": cursors.get(worker)},
        )
        if "errors" in body:
            return False
        info = body["data"]["node"]["descendants"]["pageInfo"]
        cursors[worker] = info["endCursor"] if info["hasNextPage"] else None
        if not info["hasNextPage"]:
            walks.append(time.perf_counter() - walk_started.pop(worker))
        return True

    results.append(
        await closed_loop(
            "descendants walk, pages of 100 (owner)", page, concurrency=concurrency, seconds=seconds
        )
    )
    for load in results:
        print(load.line())
    if walks:
        print(
            f"whole-tree descendants walks completed: {len(walks)}, "
            f"mean {sum(walks) / len(walks):.2f} s each"
        )


@contextlib.contextmanager
def prepared_instance(
    description: str,
    companies: int,
    computers: int,
    more_arguments: Callable[[argparse.ArgumentParser], object] | None = None,
) -> Iterator[tuple[argparse.Namespace, str, Settings, dict]]:
    """Parse the common arguments (and `more_arguments`) and build the instance:
    (args, url, settings, prepared)."""
    parser = argparse.ArgumentParser(description=description)
    if more_arguments is not None:
        more_arguments(parser)
    parser.add_argument("--companies", type=int, default=companies)
    parser.add_argument("--computers", type=int, default=computers)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with database(args.database_url) as url:
        settings = Settings(
            database_url=url, secret_key=BENCH_SECRET, upstream_allowed_hosts=("127.0.0.1",)
        )
        asyncio.run(apply_migrations(settings))
        yield args, url, settings, asyncio.run(build(settings, args.companies, args.computers))


def main() -> None:
    summary = __doc__.split("\n\n")[0]
    with prepared_instance(summary, 10_000, 100_000) as (args, url, settings, prepared):
        counts, latencies = asyncio.run(count_statements(settings, prepared))
        print(f"SQL statements per request; in-process time, one at a time ({IN_PROCESS_RUNS}):")
        for name, count in counts.items():
            p50, p90 = latencies[name]
            print(f"  {name:<46} {count:3d}   p50 {p50 * 1000:6.1f} ms   p90 {p90 * 1000:6.1f} ms")
        with console(url) as base:
            asyncio.run(measure(base, prepared, args.seconds, args.concurrency))


if __name__ == "__main__":
    main()
