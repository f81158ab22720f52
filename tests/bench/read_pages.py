"""The read_api scenarios, in-process and one request at a time, on databases that
`tests.bench.read_api --database-url URL` built (they stay), alternating between them so that
each size sees the same machine load; then what `counters.recount` costs on each.

    python -m tests.bench.read_pages sqlite:///tmp/2k.db sqlite:///tmp/100k.db [--rounds 3] [--walk]

Pages are compared size against size (the targets: 100,000 companies within 1.5x of 2,000);
the recount is what a sync that changed anything pays once (nothing changed, 1% of customers
changed status, every counter row lost). With `--walk`, each size is also walked whole: the
owner's descendants of the top company, pages of 100 to the end, one request at a time; a walk is
linear in the tree when its time per page is the same at both sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from tortoise import Tortoise
from tortoise.transactions import in_transaction

from server.app import create_app
from server.domain import accounts, counters, global_ids
from server.models import Account, Company, User, db
from server.models.enums import Service
from server.settings import Settings
from tests.bench import read_api
from tests.bench.harness import BENCH_SECRET

# the largest subtree by companies (the counters hold computers too)
COMPANY_COLUMNS = (*counters.TYPE_COLUMNS.values(), *counters.STATUS_COLUMNS.values())


async def _prepared(url: str) -> dict:
    """What read_api.build returned for the newest instance of the database."""
    await Tortoise.init(config=db.tortoise_config(url))
    try:
        instance_id = (await db.fetch("SELECT MAX(id) AS i FROM instance"))[0]["i"]
        owner = await User.get(instance_id=instance_id, account_id__not_isnull=True)
        account = await Account.get(id=owner.account_id)  # type: ignore[attr-defined]
        scoped = await User.filter(instance_id=instance_id, account_id__isnull=True).first()
        assert scoped is not None
        top = await Company.filter(instance_id=instance_id, read_only=False).order_by("depth")
        largest = await db.fetch(
            "SELECT g.company_id AS company_id FROM user_permission_set ups "
            "JOIN permission_set_group psg ON psg.permission_set_id = ups.permissionset_id "
            "JOIN static_group g ON g.id = psg.staticgroup_id "
            "JOIN subtree_count s ON s.group_id = g.id WHERE ups.console_user_id = ? "
            f"ORDER BY {' + '.join('s.' + c for c in COMPANY_COLUMNS)} DESC LIMIT 1",
            [scoped.id],
        )
        return {
            "email": account.email,
            "scoped_email": scoped.email,
            "top": top[0].id,
            "scoped_top": largest[0]["company_id"],
        }
    finally:
        await Tortoise.close_connections()


async def _recount(url: str) -> None:
    await Tortoise.init(config=db.tortoise_config(url))
    try:
        instance_id = (await db.fetch("SELECT MAX(id) AS i FROM instance"))[0]["i"]
        for label, prepare in (
            ("nothing changed", None),
            (
                "1% of customers changed status",
                "UPDATE company SET setup_state = CASE setup_state WHEN 'pending' THEN 'done' "
                "ELSE 'pending' END WHERE instance_id = ? AND type = 'CUSTOMER' AND id % 100 = 0",
            ),
            ("every counter row lost", "DELETE FROM subtree_count WHERE instance_id = ?"),
        ):
            if prepare:
                await db.execute(prepare, [instance_id])
            async with in_transaction():
                started = time.perf_counter()
                written = await counters.recount(instance_id)
                took = time.perf_counter() - started
            print(f"  recount, {label:<32} {took * 1000:7.0f} ms   {written} rows written")
    finally:
        await Tortoise.close_connections()


async def _walk(settings: Settings, prepared: dict) -> tuple[int, int, float]:
    """Companies seen, pages and seconds of the owner's whole descendants walk from the top."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        token, _ = await accounts.login(
            prepared["email"], read_api.PASSWORD, Service.EBA, settings.session_ttl
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            variables = {"id": global_ids.encode("Company", prepared["top"]), "first": 100}
            seen = pages = 0
            started = time.perf_counter()
            while True:
                response = await http.post(
                    "/graphql",
                    json={"query": read_api.DESCENDANTS, "variables": variables},
                    headers={"authorization": f"Bearer {token}"},
                )
                page = response.json()["data"]["node"]["descendants"]
                seen, pages = seen + len(page["edges"]), pages + 1
                if not page["pageInfo"]["hasNextPage"]:
                    return seen, pages, time.perf_counter() - started
                variables["after"] = page["pageInfo"]["endCursor"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--walk", action="store_true", help="also walk each tree whole")
    args = parser.parse_args()
    for round_ in range(args.rounds):
        for url in args.urls:
            settings = Settings(
                database_url=url, secret_key=BENCH_SECRET, upstream_allowed_hosts=("127.0.0.1",)
            )
            prepared = asyncio.run(_prepared(url))
            counts, latencies = asyncio.run(read_api.count_statements(settings, prepared))
            print(f"round {round_ + 1}, {url}")
            for name, (p50, p90) in latencies.items():
                print(
                    f"  {name:<46} {counts[name]:3d}   p50 {p50 * 1000:6.1f} ms"
                    f"   p90 {p90 * 1000:6.1f} ms"
                )
            if args.walk:
                seen, pages, took = asyncio.run(_walk(settings, prepared))
                print(
                    f"  whole descendants walk: {seen} companies in {pages} pages, {took:.1f} s,"
                    f" {took / pages * 1000:.1f} ms per page"
                )
    for url in args.urls:
        print(f"recount, {url}")
        asyncio.run(_recount(url))


if __name__ == "__main__":
    main()
