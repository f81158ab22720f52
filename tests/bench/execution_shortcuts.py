"""What the execution shortcuts of `server/api/execution.py` save, measured in one process.

    python -m tests.bench.execution_shortcuts [--companies 2000] [--computers 20000]
                                              [--requests 500] [--database-url postgres://...]

Two consoles on the same database in one process, one built with the shortcuts and one
without, beside the hand-written page of `tests.bench.graphql_overhead`. Requests (in-process
ASGI calls, no sockets) take turns among the three, so that a slower moment of the machine
weighs on all alike. Reports each page's trimmed mean and median, after checking that both
consoles answer the same. Worth re-running after upgrading Strawberry or graphql-core: if the
two consoles come close, the shortcuts no longer pay for themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import httpx
from starlette.routing import Route

from server.app import create_app
from server.settings import Settings
from tests.bench.graphql_overhead import hand_written_page
from tests.bench.read_api import MANAGED_CUSTOMERS, PASSWORD, prepared_instance

LOGIN = "mutation($i: LoginInput!) { login(input: $i) { token } }"


def _requests_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=500, help="of each page")


def trimmed(timings: list[float]) -> list[float]:
    """Without the fastest and the slowest tenth."""
    cut = len(timings) // 10
    return sorted(timings)[cut : len(timings) - cut] if cut else timings


async def run(settings: Settings, email: str, requests: int) -> None:
    settings = replace(settings, sync_interval=100_000_000)  # no scheduled sync meanwhile
    with_shortcuts = create_app(replace(settings, execution_shortcuts=True))
    with_shortcuts.router.routes.insert(0, Route("/bench/customers", hand_written_page))
    without = create_app(replace(settings, execution_shortcuts=False))
    async with with_shortcuts.router.lifespan_context(with_shortcuts):  # one ORM for both
        fast, slow = (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
            for app in (with_shortcuts, without)
        )
        async with fast, slow:
            login = {"i": {"email": email, "password": PASSWORD, "via": "EBA"}}
            body = (await fast.post("/graphql", json={"query": LOGIN, "variables": login})).json()
            headers = {"authorization": f"Bearer {body['data']['login']['token']}"}
            page = {"query": MANAGED_CUSTOMERS, "variables": {"first": 50}}

            def graphql(client: httpx.AsyncClient) -> Callable[[], Awaitable[httpx.Response]]:
                return lambda: client.post("/graphql", json=page, headers=headers)

            pages = {
                "GraphQL page, with the shortcuts": graphql(fast),
                "GraphQL page, without them": graphql(slow),
                "hand-written page": lambda: fast.get("/bench/customers", headers=headers),
            }
            answers = [(await request()).json() for request in pages.values()]
            assert answers[0] == answers[1], "the two consoles answer differently"
            timings: dict[str, list[float]] = {name: [] for name in pages}
            for _ in range(requests):
                for name, request in pages.items():
                    started = time.perf_counter()
                    response = await request()
                    timings[name].append(time.perf_counter() - started)
                    assert response.status_code == 200
    for name, values in timings.items():
        kept = trimmed(values)
        print(
            f"{name:<36} trimmed mean {statistics.mean(kept) * 1000:6.2f} ms"
            f"   median {statistics.median(values) * 1000:6.2f} ms"
        )


def main() -> None:
    summary = __doc__.split("\n\n")[0]
    with prepared_instance(summary, 2_000, 20_000, _requests_argument) as (
        args,
        _,
        settings,
        prepared,
    ):
        asyncio.run(run(settings, prepared["email"], args.requests))


if __name__ == "__main__":
    main()
