"""What GraphQL costs over the floor of any API, from the same process and database.

    python -m tests.bench.graphql_overhead [--companies 2000] [--computers 20000] [--seconds 10]
                                           [--concurrency 8] [--workers 1 2]
                                           [--database-url postgres://...]

Serves, with uvicorn in a subprocess (one worker, then two), the console plus a hand-written
Starlette endpoint defined here that returns the Managed Customers page as the same JSON from
the same SQL (the same domain listing, the same batched lookups, orjson). Measures the bare
`{ __typename }`, the GraphQL page (first: 50, each customer with its parent and its group) and
the hand-written page, and reports their throughputs, p99s and the ratio GraphQL / hand-written.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.app import app_from_env
from server.domain import accounts, companies, computers, customers, global_ids, groups
from server.domain.access import scope_of
from server.domain.listing import PageRequest
from server.models.enums import CustomerStatus
from server.settings import Settings
from tests.bench.harness import Load, closed_loop, console, graphql, login
from tests.bench.read_api import MANAGED_CUSTOMERS, PASSWORD, prepared_instance

BARE = "{ __typename }"
TURNS = 5


async def hand_written_page(request: Request) -> Response:
    """The Managed Customers page without GraphQL: same SQL, same JSON."""
    settings: Settings = request.app.state.settings
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    session = await accounts.resolve_session(token, settings.session_ttl)
    if session is None:
        return Response(b'{"errors":[{"message":"unauthenticated"}]}', status_code=401)
    scope = await scope_of(
        session.instance_id, session.user_id, session.owner, session.home_group_path
    )
    assert scope is not None
    listing = customers.managed_customers(scope, None, None)
    page = await listing.page(PageRequest(first=50))
    total, _ = await customers.count(scope, listing, None, None)
    counts, _ = await customers.status_counts(scope, None)
    parents = await companies.by_ids(scope, [c.parent_id for c in page.items if c.parent_id])  # type: ignore[attr-defined]
    own_groups = await groups.by_company_ids(scope, [c.id for c in page.items])
    computer_counts = await computers.counts_in_groups(scope, list(own_groups.values()), True)
    edges = []
    for cursor, company in zip(page.cursors, page.items, strict=True):
        parent = parents.get(company.parent_id)  # type: ignore[attr-defined]
        group = own_groups[company.id]
        edges.append(
            {
                "cursor": cursor,
                "node": {
                    "id": global_ids.encode("Company", company.id),
                    "publicId": company.public_id,
                    "name": company.name,
                    "customerStatus": customers.customer_status(company),
                    "unlinkedAt": company.unlinked_at.isoformat() if company.unlinked_at else None,
                    "parent": parent
                    and {
                        "id": global_ids.encode("Company", parent.id),
                        "name": parent.name,
                        "type": parent.type,
                    },
                    "staticGroup": {
                        "id": global_ids.encode("StaticGroup", group.id),
                        "name": group.name,
                        "computerCount": computer_counts[group.id],
                    },
                },
            }
        )
    body = {
        "data": {
            "managedCustomers": {
                "totalCount": total,
                "statusCounts": {
                    "notSetUp": counts[CustomerStatus.NOT_SET_UP],
                    "normal": counts[CustomerStatus.NORMAL],
                    "unlinked": counts[CustomerStatus.UNLINKED],
                },
                "pageInfo": {
                    "hasNextPage": page.has_next,
                    "hasPreviousPage": page.has_previous,
                    "startCursor": page.cursors[0] if page.cursors else None,
                    "endCursor": page.cursors[-1] if page.cursors else None,
                },
                "edges": edges,
            }
        }
    }
    return Response(orjson.dumps(body), media_type="application/json")


def bench_app() -> Starlette:
    """The console as `msp-console serve` builds it, with the hand-written endpoint beside it
    (uvicorn factory)."""
    app = app_from_env()
    app.router.routes.insert(0, Route("/bench/customers", hand_written_page))
    return app


async def graphql_bytes(
    session: aiohttp.ClientSession, url: str, token: str, query: str, variables: dict
) -> bytes:
    """The response body, not decoded: the client spends on both pages alike."""
    async with session.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        return await response.read()


async def run(url: str, email: str, seconds: float, concurrency: int) -> list:
    async with aiohttp.ClientSession() as session:
        token = await login(session, url, email, PASSWORD)
        graphql_page = await graphql(session, url, token, MANAGED_CUSTOMERS, {"first": 50})
        async with session.get(
            f"{url}/bench/customers", headers={"authorization": f"Bearer {token}"}
        ) as response:
            hand_page = await response.json()
    same = (
        graphql_page["data"]["managedCustomers"]["edges"]
        == hand_page["data"]["managedCustomers"]["edges"]
    )

    async def bare(session, _n):
        return b'"errors"' not in await graphql_bytes(session, url, token, BARE, {})

    async def page(session, _n):
        body = await graphql_bytes(session, url, token, MANAGED_CUSTOMERS, {"first": 50})
        return b'"errors"' not in body

    async def hand(session, _n):
        async with session.get(
            f"{url}/bench/customers", headers={"authorization": f"Bearer {token}"}
        ) as response:
            return response.status == 200 and b'"errors"' not in await response.read()

    results = [
        await closed_loop("{ __typename }", bare, concurrency=concurrency, seconds=seconds),
        Load("Managed Customers page, GraphQL"),
        Load("Managed Customers page, hand-written"),
    ]
    # the two pages take turns, so that a slower minute of a shared machine weighs on both
    for turn in range(TURNS):
        for load, request in zip(results[1:], (page, hand), strict=True):
            part = await closed_loop(
                load.name,
                request,
                concurrency=concurrency,
                seconds=seconds / TURNS,
                warmup=1.0 if turn == 0 else 0.2,
            )
            load.add(part)
    print(f"  (the two pages return the same edges: {same})")
    return results


def _workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])


def main() -> None:
    summary = __doc__.split("\n\n")[0]
    with prepared_instance(summary, 2_000, 20_000, _workers_argument) as (args, url, _, prepared):
        for workers in args.workers:
            print(f"\n{workers} worker(s):")
            with console(url, workers, "tests.bench.graphql_overhead:bench_app") as base:
                bare, page, hand = asyncio.run(
                    run(base, prepared["email"], args.seconds, args.concurrency)
                )
            for load in (bare, page, hand):
                print(load.line())
            print(f"  GraphQL page / hand-written page throughput: {page.rate / hand.rate:.2f}")


if __name__ == "__main__":
    main()
