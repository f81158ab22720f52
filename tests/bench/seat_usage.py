"""Seat usage benchmark: `seatUsage(recursive: true)` of the top company, on an instance built by
`tests.bench.read_api` and kept (its --database-url):

    python -m tests.bench.read_api --companies 100000 --computers 1000000 --seconds 1 \
        --database-url sqlite:////tmp/seat/big.db
    python -m tests.bench.seat_usage --database-url sqlite:////tmp/seat/big.db [--runs 15]

Migrates the database first and announces the connection transitions due (and says how long
each took), then asks the real app in this
process (httpx over ASGI), one request at a time, for the top company's seat usage as its owner
and the seat usage of the largest granted company as the user with 50 permission sets; prints
the SQL statements of one request and the median and slowest time of `--runs`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from tortoise import Tortoise

from server.app import create_app
from server.cli import apply_migrations
from server.domain import accounts, global_ids
from server.domain.connections import announce_transitions
from server.models import db
from server.models.enums import Service
from server.settings import Settings
from tests.bench.harness import BENCH_SECRET
from tests.bench.read_api import PASSWORD

SEAT_USAGE = """query($id: ID!) { node(id: $id) { ... on Company {
  seatUsage(recursive: true) { seats activated computers protected overUsed } } } }"""


async def targets(settings: Settings) -> list[tuple[str, str, Service | None, int]]:
    """(scenario, email, via, company id): the owner on the top company, the scoped user on the
    granted company with the most companies below it. First the transitions due since the
    instance was built are announced, so the app's watcher finds none while we measure."""
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    try:
        started = time.perf_counter()
        announced = await announce_transitions(None, settings)
        print(
            f"announced {sum(map(len, announced.values()))} transitions "
            f"in {time.perf_counter() - started:.1f} s"
        )
        owner = await db.fetch_value("SELECT email FROM account ORDER BY id LIMIT 1")
        top = await db.fetch_value(
            "SELECT id FROM company WHERE read_only = ? ORDER BY depth, id LIMIT 1", [False]
        )
        scoped = await db.fetch_value(
            "SELECT email FROM console_user WHERE email LIKE 'scoped-%' ORDER BY id LIMIT 1"
        )
        granted = await db.fetch_value(
            "SELECT c.id FROM console_user u "
            "JOIN user_permission_set ups ON ups.console_user_id = u.id "
            "JOIN permission_set_group psg ON psg.permission_set_id = ups.permissionset_id "
            "JOIN static_group g ON g.id = psg.staticgroup_id "
            "JOIN company c ON c.id = g.company_id "
            "WHERE u.email = ? ORDER BY (SELECT COUNT(*) FROM company d WHERE d.instance_id = "
            "c.instance_id AND d.path >= c.path AND d.path < substr(c.path, 1, length(c.path) - 1)"
            " || '0') DESC LIMIT 1",
            [scoped],
        )
    finally:
        await Tortoise.close_connections()
    return [
        ("top company (owner)", owner, Service.EBA, top),
        ("largest grant (50 permission sets)", scoped, None, granted),
    ]


async def measure(settings: Settings, runs: int) -> None:
    chosen = await targets(settings)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for name, email, via, company in chosen:
                token, _ = await accounts.login(email, PASSWORD, via, settings.session_ttl)
                body = {
                    "query": SEAT_USAGE,
                    "variables": {"id": global_ids.encode("Company", company)},
                }
                headers = {"authorization": f"Bearer {token}"}
                with db.count_statements() as counter:
                    answer = (await http.post("/graphql", json=body, headers=headers)).json()
                assert "errors" not in answer, answer
                timings = []
                for _ in range(runs):
                    started = time.perf_counter()
                    await http.post("/graphql", json=body, headers=headers)
                    timings.append(time.perf_counter() - started)
                timings.sort()
                print(
                    f"{name:<36} {counter.count:2d} statements   "
                    f"p50 {timings[len(timings) // 2] * 1000:8.1f} ms   "
                    f"max {timings[-1] * 1000:8.1f} ms   {answer['data']['node']['seatUsage']}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    settings = Settings(
        database_url=args.database_url,
        secret_key=BENCH_SECRET,
        upstream_allowed_hosts=("127.0.0.1",),
    )
    started = time.perf_counter()
    asyncio.run(apply_migrations(settings))
    print(f"migrations in {time.perf_counter() - started:.1f} s")
    asyncio.run(measure(settings, args.runs))


if __name__ == "__main__":
    main()
