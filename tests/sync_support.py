"""Helpers for the sync tests: a tenant connected to a simulator and its runs, the console's trees
as the upstream would spell them, the invariants of both trees, a byte-level dump of the data,
what a plan from every row would still change, and ports where no MSP Administrator answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from typing import Any

from server.domain import sync_runs, tree_paths
from server.domain.hierarchy import SHARES_OBJECTS
from server.domain.instances import create_instance
from server.domain.reconcile_input import (
    COMPANY_COLUMNS,
    GROUP_COLUMNS,
    CompanyRow,
    GroupRow,
    wanted_companies,
)
from server.domain.reconcile_plan import Planner
from server.domain.upstream_connection import ClientFactory, connect_msp_administrator
from server.models import Account, SyncRun, db
from server.models.enums import CompanyType, GroupKind, Service
from server.settings import Settings
from server.upstream.client import MspAdministratorClient
from server.upstream.codes import TYPE_CODE
from server.upstream.simulator import DEFAULT_PASSWORD, DEFAULT_USERNAME, Simulator, UpstreamTree
from tests import factories
from tests.conftest import LOCAL_UPSTREAM, TEST_SECRET
from tests.graphql_client import GraphQLClient

FAST = {
    "timeout": 2.0,
    "max_retries": 2,
    "max_backoff_total": 0.5,
    "backoff_base": 0.002,
    "backoff_max": 0.02,
    "progress_interval": 0.05,
}
CONNECTING = Settings(secret_key=TEST_SECRET, upstream_allowed_hosts=LOCAL_UPSTREAM)
"""What connecting reads of the settings: the secret key, the allowed hosts and the limits."""


def fast_client(**options: Any) -> ClientFactory:
    """Makes clients with short timeouts and backoffs (and `options`), whatever the sync asks:
    pass it as `make_client` to connecting and to runs."""

    def make(url: str, username: str, password: str, **asked: Any) -> MspAdministratorClient:
        return MspAdministratorClient(url, username, password, **{**asked, **FAST, **options})

    return make


FAST_CLIENT = fast_client()


async def tenant() -> factories.Owner:
    """An account with its instance, without signing in (domain tests need no token)."""
    email = factories.unique_email()
    account = await Account.create(email=email, password_hash="!", services="EBA,EMA2")
    instance = await create_instance(account.id, Service.EBA, f"Console of {email}")
    return factories.Owner(email, account.id, "", instance.id)


async def connected_tenant(client: GraphQLClient | None, sim: Simulator) -> factories.Owner:
    """A tenant connected to the simulator; signed in when given a GraphQL client."""
    owner = await factories.owner(client) if client is not None else await tenant()
    assert owner.instance_id is not None
    await connect_msp_administrator(
        None,
        owner.instance_id,
        sim.url,
        DEFAULT_USERNAME,
        DEFAULT_PASSWORD,
        CONNECTING,
        make_client=FAST_CLIENT,
    )
    return owner


async def synced(owner: factories.Owner, settings: Settings, **options: Any) -> SyncRun:
    """A sync run of the tenant's instance, with the fast client unless `options` say otherwise."""
    assert owner.instance_id is not None
    return await sync_runs.sync_now(
        owner.instance_id, settings, **{"make_client": FAST_CLIENT, **options}
    )


async def synced_tenant(sim: Simulator, settings: Settings) -> factories.Owner:
    """A tenant connected to the simulator, after its first sync."""
    owner = await connected_tenant(None, sim)
    await synced(owner, settings)
    return owner


async def companies_of(instance_id: int) -> list[dict[str, Any]]:
    return await db.fetch("SELECT * FROM company WHERE instance_id = ? ORDER BY id", [instance_id])


async def groups_of(instance_id: int) -> list[dict[str, Any]]:
    return await db.fetch(
        "SELECT * FROM static_group WHERE instance_id = ? ORDER BY id", [instance_id]
    )


async def dump(instance_id: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every column of every company and group row, as stored."""
    return (
        [tuple(row.items()) for row in await companies_of(instance_id)],
        [tuple(row.items()) for row in await groups_of(instance_id)],
    )


async def console_tree(
    instance_id: int,
) -> tuple[dict[str, tuple[str, int, int, str | None]], set[str], list[str]]:
    """(linked account companies as `UpstreamTree.snapshot()` spells them, unlinked public ids,
    read-only ancestors top first)."""
    rows = await companies_of(instance_id)
    by_id = {row["id"]: row for row in rows}
    linked: dict[str, tuple[str, int, int, str | None]] = {}
    unlinked: set[str] = set()
    ancestors = []
    for row in sorted(rows, key=lambda r: r["depth"]):
        parent = by_id[row["parent_id"]]["public_id"] if row["parent_id"] else None
        if row["unlinked_at"] is not None:
            unlinked.add(row["public_id"])
        elif row["read_only"]:
            ancestors.append(row["public_id"])
        else:
            linked[row["public_id"]] = (
                row["name"],
                TYPE_CODE[CompanyType(row["type"])],
                row["upstream_status"],
                parent,
            )
    return linked, unlinked, ancestors


async def check_trees(instance_id: int) -> None:
    """Both trees are consistent: every group's path, sort key and depth follow its parent's;
    every company has its group, named like it, under its parent's group, sharing its path and
    sort key; companies that share objects have a Shared Objects group."""
    companies = {row["id"]: row for row in await companies_of(instance_id)}
    groups = {row["id"]: row for row in await groups_of(instance_id)}
    kinds = {}
    for group in groups.values():
        parent = groups.get(group["parent_id"]) if group["parent_id"] else None
        if parent is None:
            assert group["kind"] == GroupKind.ALL.value
            assert group["path"] == f"/{group['id']}/" and group["depth"] == 0
            assert group["sort_key"] == tree_paths.sort_segment(group["name"], group["id"])
        else:
            assert group["path"] == tree_paths.child_path(parent["path"], group["id"]), group
            assert group["sort_key"] == tree_paths.child_sort_key(
                parent["sort_key"], group["name"], group["id"]
            ), group
            assert group["depth"] == parent["depth"] + 1, group
        if group["company_id"] is not None:
            kinds[(group["company_id"], group["kind"])] = group
    companies_group = next(g for g in groups.values() if g["kind"] == GroupKind.COMPANIES.value)
    for company in companies.values():
        group = kinds[(company["id"], GroupKind.COMPANY.value)]
        assert group["name"] == company["name"]
        assert (group["path"], group["sort_key"]) == (company["path"], company["sort_key"])
        assert group["depth"] == company["depth"] + 2
        assert company["sort_name"] == tree_paths.sort_name(company["name"])
        if company["parent_id"] is None:
            assert group["parent_id"] == companies_group["id"]
        else:
            parent_group = kinds[(company["parent_id"], GroupKind.COMPANY.value)]
            assert group["parent_id"] == parent_group["id"]
        if CompanyType(company["type"]) in SHARES_OBJECTS:
            shared = kinds[(company["id"], GroupKind.SHARED_OBJECTS.value)]
            assert shared["parent_id"] == group["id"]


async def left_to_plan(instance_id: int, sim: Simulator) -> list[str]:
    """What a plan of the upstream's tree made from every row of the instance would still write
    (a sync reads only the rows that differ, `reconcile_scope`): nothing after a sync, unless
    that sync left a difference unread."""
    async with MspAdministratorClient(sim.url, DEFAULT_USERNAME, DEFAULT_PASSWORD) as api:
        snapshot = await api.fetch_tree(sim.tree.account_id)
    companies = await db.fetch_tuples(
        f"SELECT {COMPANY_COLUMNS} FROM company c JOIN static_group g "
        "ON g.company_id = c.id AND g.kind = 'company' WHERE c.instance_id = ?",
        [instance_id],
    )
    groups = await db.fetch_tuples(
        f"SELECT {GROUP_COLUMNS} FROM static_group g WHERE g.instance_id = ? "
        "AND g.kind <> 'company'",
        [instance_id],
    )
    planner = Planner(
        wanted_companies(snapshot),
        [CompanyRow.of(row) for row in companies],
        [GroupRow.of(row) for row in groups],
    )
    fresh = {table: range(-n, 0) for table, n in planner.ids_needed().items()}
    plan = planner.plan(fresh)
    return [
        f"{name}: {rows}"
        for name, rows in (
            ("new companies", plan.new_companies),
            ("changed companies", plan.changed_companies),
            ("new groups", plan.new_groups),
            ("changed groups", plan.changed_groups),
            ("unlink", plan.unlink),
            ("relink", plan.relink),
        )
        if rows
    ]


async def assert_mirrors(instance_id: int, upstream: UpstreamTree, ever_seen: set[str]) -> None:
    """The console's trees are the upstream's, node for node; what vanished is unlinked."""
    linked, unlinked, ancestors = await console_tree(instance_id)
    expected = upstream.snapshot()
    assert linked == expected
    assert ancestors == [c["publicId"] for c in upstream.ancestors_of(upstream.account_id)]
    assert unlinked == ever_seen - set(expected) - set(ancestors)
    await check_trees(instance_id)


@asynccontextmanager
async def port_that(reply: bytes | None) -> AsyncIterator[int]:
    """A port that accepts connections and sends `reply` (None: never answers)."""
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        if reply is not None:
            writer.write(reply)
            await writer.drain()
        await done.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        done.set()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A port nothing listens on (bound for a moment, then let go)."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
