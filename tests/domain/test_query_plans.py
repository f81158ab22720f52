"""Every page of a tree listing is an index range that stops after its rows, on whichever
database the suite runs: SQLite's `EXPLAIN QUERY PLAN` shows a search on the right index and no
temporary B-tree for the order; PostgreSQL's `EXPLAIN (ANALYZE, FORMAT JSON)` shows no Sort and
scans that read no more rows than the page returns (plus the one that tells a next page
exists); every page index ends with `id`, the last sort key, so not even an Incremental Sort.
So is each batch of the connection watcher's stale lookup, ranges of announced status and check-in.
PostgreSQL runs with sequential scans, bitmap scans, hash and merge joins off: the test tree is
small, and at this size reading a table whole is cheaper and says nothing of a large
instance."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from server.domain import companies, computers, connections, customers, groups, usage
from server.domain.access import Scope, whole_instance
from server.domain.listing import PageRequest
from server.models import Company, Computer, StaticGroup, User, db
from server.models.companies import top_group
from server.models.enums import Area, ConnectionStatus, GroupKind, Level, Service
from tests import factories
from tests.agents.conftest import SETTINGS

PAGE = 10


@pytest.fixture(scope="module")
async def instance(app: object) -> dict[str, Any]:
    from server.domain.accounts import create_account
    from server.domain.instances import create_instance

    account = await create_account(factories.unique_email(), "long enough password", [Service.EBA])
    instance = await create_instance(account.id, Service.EBA, None)
    tree = await factories.company_tree(
        instance.id, msps=4, customers_per_msp=30, computers_per_customer=2
    )
    crowded = tree.all_customers[0]
    for n in range(60):
        await factories.computer(instance.id, crowded, f"crowded-{n:02d}")
    await db.refresh_statistics()
    top = await StaticGroup.get(instance_id=instance.id, kind=GroupKind.ALL)
    owner = await User.get(instance_id=instance.id)
    scope = Scope.for_owner(instance.id, owner.id, top.path)
    return {"scope": scope, "tree": tree}


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


async def _plan(sql: str, params: list[Any]) -> list[str] | list[dict[str, Any]]:
    if not db.is_postgres():
        rows = await db.fetch(f"EXPLAIN QUERY PLAN {sql}", params)
        return [str(row["detail"]) for row in rows]
    async with in_transaction():
        await db.execute("SET LOCAL enable_seqscan = off")
        # Bitmap scans too: with the whole suite's rows in the tables and their statistics a
        # few tests old, a bitmap of two small indexes (then a sort) can look cheapest, and
        # says no more of a large instance than a sequential scan does.
        await db.execute("SET LOCAL enable_bitmapscan = off")
        # and joins that read one side whole: hashing 300 computers is cheapest here, not at
        # a million
        await db.execute("SET LOCAL enable_hashjoin = off")
        await db.execute("SET LOCAL enable_mergejoin = off")
        rows = await db.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
    raw = next(iter(rows[0].values()))
    import orjson

    document = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return list(_nodes(document[0]["Plan"]))


async def assert_stops_early(
    sql: str,
    params: list[Any],
    returned: int,
    sqlite_search: str,
    pages: int = 1,
    after: bool = False,
) -> None:
    """`pages` pages of `returned` rows each (children of several parents) read no more; after
    a cursor, the cursor's own row too (the index range starts at its sort key, the row
    comparison on (sort key, id) then leaves it out)."""
    plan = await _plan(sql, params)
    if not db.is_postgres():
        details = "\n".join(plan)  # type: ignore[arg-type]
        assert "TEMP B-TREE" not in details, details
        assert sqlite_search in details, details
        return
    nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
    assert not [n for n in nodes if "Sort" in n["Node Type"]], nodes
    read = sum(
        n.get("Actual Rows", 0) * n.get("Actual Loops", 1) + n.get("Rows Removed by Filter", 0)
        for n in nodes
        if "Scan" in n["Node Type"] and n.get("Relation Name") in {"company", "computer"}
    )
    keys = ("Node Type", "Index Name", "Actual Rows", "Actual Loops", "Rows Removed by Filter")
    summary = [tuple(n.get(k) for k in (*keys, "Index Cond", "Filter")) for n in nodes]
    assert read <= (returned + 1 + after) * pages, f"{read} rows read: {summary}"


async def test_a_descendants_page_reads_its_rows_off_the_sort_key_index(instance):
    tree = instance["tree"]
    listing = companies.descendants(instance["scope"], tree.manager)
    await assert_stops_early(
        *listing.page_sql(PageRequest(first=PAGE)), PAGE, "sort_key>? AND sort_key<?"
    )
    first = await listing.page(PageRequest(first=PAGE))
    after = PageRequest(first=PAGE, after=(first.items[-1].sort_key, first.items[-1].id))
    await assert_stops_early(
        *listing.page_sql(after), PAGE, "sort_key>? AND sort_key<?", after=True
    )


async def test_a_managed_customers_page_reads_its_rows_off_the_name_index(instance):
    listing = customers.managed_customers(instance["scope"], None, None)
    await assert_stops_early(*listing.page_sql(PageRequest(first=PAGE)), PAGE, "type=?")


async def test_children_pages_read_each_page_off_the_parent_index(instance):
    tree = instance["tree"]
    listing = companies.narrow(companies.visible(instance["scope"]))
    parents = [msp.id for msp in tree.msps[:2]]
    sql, params = listing.pages_by_sql("c.parent_id", parents, PageRequest(first=PAGE))
    await assert_stops_early(sql, params, PAGE, "parent_id=?", pages=len(parents))
    found = await companies.children_pages(
        instance["scope"], parents, None, PageRequest(first=PAGE)
    )
    expected = [c.name for c in tree.customers[parents[0]][:PAGE]]
    assert [c.name for c in found[parents[0]].items] == expected
    assert found[parents[0]].has_next


async def test_group_children_pages_read_each_page_off_the_parent_index(instance):
    tree = instance["tree"]
    group = await StaticGroup.get(company_id=tree.msps[0].id, kind=GroupKind.COMPANY)
    listing = groups.visible(instance["scope"]).filter(groups._IN_TREE)
    sql, params = listing.pages_by_sql("g.parent_id", [group.id], PageRequest(first=PAGE))
    plan = await _plan(sql, params)
    if not db.is_postgres():
        assert "TEMP B-TREE" not in "\n".join(plan), plan  # type: ignore[arg-type]


async def test_a_page_of_every_computer_reads_its_rows_off_the_name_index(instance):
    listing = computers.visible(instance["scope"])
    await assert_stops_early(*listing.page_sql(PageRequest(first=PAGE)), PAGE, "instance_id=?")


async def test_a_page_of_one_groups_computers_reads_its_rows_off_the_group_index(instance):
    tree = instance["tree"]
    group = await StaticGroup.get(company_id=tree.all_customers[0].id, kind=GroupKind.COMPANY)
    listing = await computers.in_group(computers.visible(instance["scope"]), group, recursive=False)
    await assert_stops_early(
        *listing.page_sql(PageRequest(first=PAGE)), PAGE, "instance_id=? AND group_id=?"
    )


async def test_a_descendants_page_after_a_deep_cursor_starts_its_range_at_the_cursor(instance):
    # SQLite walks the sort-key index from the subtree's low end unless the cursor is the low
    # end: every page of a walk would read everything before it (a quadratic walk)
    tree = instance["tree"]
    listing = companies.descendants(instance["scope"], tree.manager)
    everything = await listing.page(PageRequest(first=100))
    deep = everything.items[70]
    sql, params = listing.page_sql(PageRequest(first=PAGE, after=(deep.sort_key, deep.id)))
    assert "c.sort_key >= ? AND c.sort_key < ?" in sql and deep.sort_key in params
    page = await listing.page(PageRequest(first=PAGE, after=(deep.sort_key, deep.id)))
    assert [c.id for c in page.items] == [c.id for c in everything.items[71 : 71 + PAGE]]


async def test_a_cursor_from_outside_the_subtree_does_not_widen_a_descendants_page(instance):
    tree = instance["tree"]
    inside = await companies.descendants(instance["scope"], tree.msps[1]).page(
        PageRequest(first=100)
    )
    for made_up in (("", 0), (tree.manager.sort_key, 0), ("\U0010ffff", 0)):
        listing = companies.descendants(instance["scope"], tree.msps[1])
        page = await listing.page(PageRequest(first=100, after=made_up))
        assert {c.id for c in page.items} <= {c.id for c in inside.items}, made_up


async def _msp_subtree_computers(instance: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The listing of one MSP's subtree of computers, and the plan of its first page."""
    group = await StaticGroup.get(company_id=instance["tree"].msps[1].id, kind=GroupKind.COMPANY)
    listing = await computers.in_group(computers.visible(instance["scope"]), group, True)
    return listing, await _plan(*listing.page_sql(PageRequest(first=PAGE)))


async def test_a_small_subtrees_computers_are_read_group_by_group(instance):
    # SQLite would walk the name index and filter by path: 2.8 s for a customer's computers
    # at 1,000,000 (measured); PostgreSQL chooses by cost, so it gets the subtree's group ids
    # once (an init plan) and the test checks that form, since at this size any plan is cheap
    listing, plan = await _msp_subtree_computers(instance)
    if not db.is_postgres():
        details = "\n".join(plan)  # type: ignore[arg-type]
        assert "(instance_id=? AND path>? AND path<?)" in details, details
        assert "SEARCH m USING INDEX" in details and "group_id=?" in details, details
    else:
        nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
        assert [n for n in nodes if n.get("Subplan Name", "").startswith("InitPlan")], nodes
    names = [c.name for c in (await listing.page(PageRequest(first=100))).items]
    assert len(names) == 30 * 2 and names == sorted(names, key=str.lower)  # customers x 2


async def test_a_large_subtrees_computers_are_read_off_the_name_index(instance, monkeypatch):
    monkeypatch.setattr(computers, "SMALL_SUBTREE", 10)
    # PostgreSQL chooses by cost here (its statistics see the path range): the test checks
    # that no group ids are read first, the small subtree's form
    _, plan = await _msp_subtree_computers(instance)
    if not db.is_postgres():
        details = "\n".join(plan)  # type: ignore[arg-type]
        assert "TEMP B-TREE" not in details and "SEARCH m USING INDEX" in details, details
    else:
        nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
        assert not [n for n in nodes if n.get("Subplan Name", "").startswith("InitPlan")], nodes


async def _status_page(instance: dict[str, Any], status: ConnectionStatus) -> tuple[Any, Any]:
    """The listing of the instance's computers of `status`, and the plan of its first page."""
    scope = instance["scope"]
    listing = await computers.narrow(
        computers.visible(scope), scope.instance_id, SETTINGS, [status]
    )
    return listing, await _plan(*listing.page_sql(PageRequest(first=PAGE)))


async def test_a_page_of_a_rare_status_reads_only_its_computers_off_the_check_in_index(instance):
    # every computer of the module's instance has never connected: none is not connected, and
    # walking the name index for one would read them all (a million at a large instance);
    # PostgreSQL chooses by cost and reads none either way: the test holds it to that
    listing, plan = await _status_page(instance, ConnectionStatus.NOT_CONNECTED)
    assert (await listing.page(PageRequest(first=PAGE))).items == []
    if not db.is_postgres():
        details = "\n".join(plan)  # type: ignore[arg-type]
        assert "last_connected_at<?" in details and "TEMP B-TREE" in details, details
    else:
        nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
        assert _read(nodes, "computer") == 0, nodes


async def test_a_page_of_a_common_status_stops_early_off_the_name_index(instance, monkeypatch):
    monkeypatch.setattr(computers, "SMALL_SUBTREE", 10)  # never connected: all of them, > 10
    listing, _ = await _status_page(instance, ConnectionStatus.NEVER_CONNECTED)
    await assert_stops_early(*listing.page_sql(PageRequest(first=PAGE)), PAGE, "instance_id=?")
    names = [c.name for c in (await listing.page(PageRequest(first=PAGE))).items]
    assert len(names) == PAGE and names == sorted(names, key=str.lower)


async def test_a_syncs_license_read_finds_unlinked_and_read_only_companies_off_their_indexes(
    instance,
):
    from server.domain.license_reconcile import compared_licenses

    plan = await _plan(*compared_licenses(instance["scope"].instance_id, [1, 2]))
    if not db.is_postgres():
        details = "\n".join(plan)  # type: ignore[arg-type]
        assert "idx_company_unlinked" in details and "idx_company_read_only" in details, details
        assert "SCAN company" not in details, details
        return
    scans = {n.get("Index Name") for n in plan if n.get("Relation Name") == "company"}  # type: ignore[union-attr]
    assert scans == {"idx_company_unlinked", "idx_company_read_only"}, plan


async def test_a_syncs_differ_reads_every_fingerprint_off_one_index_without_the_table(instance):
    # all a sync that changed nothing reads: on PostgreSQL off the unique key's INCLUDE columns
    # (migration 0019), on SQLite off the index of the key and the fingerprints
    from server.domain.reconcile_scope import fingerprints_sql

    instance_id = instance["scope"].instance_id
    if db.is_postgres():
        # the visibility map autovacuum keeps of a large table: without it PostgreSQL prices an
        # index-only read as one that visits the table too, and at this size picks another.
        # VACUUM marks a page all-visible only once no transaction open may miss its rows: again
        # while one (a background task of the app's, on a slow machine) holds an older snapshot
        for _ in range(50):
            await db.execute("VACUUM company")
            visible = "SELECT relallvisible >= relpages FROM pg_class WHERE relname = 'company'"
            if await db.fetch_value(visible):
                break
            await asyncio.sleep(0.1)
    plan = await _plan(*fingerprints_sql(instance_id))
    if not db.is_postgres():
        details = "\n".join(plan)  # type: ignore[arg-type]
        assert "USING COVERING INDEX" in details and "(instance_id=?)" in details, details
        return
    nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
    scans = [n for n in nodes if n.get("Relation Name") == "company"]
    assert [n["Node Type"] for n in scans] == ["Index Only Scan"], scans
    assert _read(nodes, "company") == await Company.filter(instance_id=instance_id).count()


async def test_a_watcher_batch_reads_only_the_stale_computers_it_claims(instance):
    # The app's own watcher runs meanwhile, at the real time: these computers are stale only
    # ten days on (gone quiet), so it leaves them to this test; beside them, computers the
    # same status was announced for and that are not stale, which a filter would read too.
    now = datetime.now(UTC)
    later = now + timedelta(days=10)
    ids = [c.id for c in await Computer.filter(instance_id=instance["scope"].instance_id)]
    states = [
        (ConnectionStatus.CONNECTED, now),  # NOT_CONNECTED ten days on
        (ConnectionStatus.DELAYED, now - timedelta(hours=1)),  # NOT_CONNECTED too
        (ConnectionStatus.CONNECTED, later),  # not stale then
        (ConnectionStatus.NOT_CONNECTED, now - timedelta(days=3)),  # nor
    ]
    for n, (announced, seen) in enumerate(states):
        await Computer.filter(id__in=ids[n::4]).update(
            announced_status=announced, last_connected_at=seen
        )
    batch = 5
    sql, params = connections.stale_batch_sql(later, SETTINGS, batch)
    plan = await _plan(sql, params)
    if not db.is_postgres():
        details: list[str] = plan  # type: ignore[assignment]
        on_computers = [d for d in details if " computer " in f"{d} "]
        ranges = [d for d in on_computers if "(announced_status=? AND last_connected_at" in d]
        assert ranges == on_computers and len(ranges) == 8, details
        assert not [d for d in details if "TEMP B-TREE" in d], details
        return
    nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
    scans = [n for n in nodes if n.get("Relation Name") == "computer"]
    assert all(n["Node Type"].startswith("Index") for n in scans), scans
    read = sum(
        n["Actual Rows"] * n["Actual Loops"] + n.get("Rows Removed by Filter", 0) for n in scans
    )
    assert read == batch, scans


def _read(nodes: list[dict[str, Any]], table: str) -> int:
    """Rows the scans of `table` read, those a filter then dropped included."""
    return sum(
        n.get("Actual Rows", 0) * n.get("Actual Loops", 1) + n.get("Rows Removed by Filter", 0)
        for n in nodes
        if "Scan" in n["Node Type"] and n.get("Relation Name") == table
    )


DAYS = 5


@pytest.fixture(scope="module")
async def ledger(instance: dict[str, Any]) -> dict[str, Any]:
    """Every company of the tree bills two products, snapshotted on DAYS days of October."""
    scope = instance["scope"]
    for company in await Company.filter(instance_id=scope.instance_id):
        await factories.license(scope.instance_id, company)
        await factories.license(scope.instance_id, company, product_code=300)
    for day in range(1, DAYS + 1):
        await usage.record_snapshot(scope.instance_id, dt.datetime(2026, 10, day, tzinfo=dt.UTC))
    await db.refresh_statistics()
    return instance


async def test_a_usage_report_page_reads_its_companies_and_their_ledger_off_indexes(ledger):
    # a ledger row (company, product, day) read from the table was a table page read at size:
    # the ledger is written a day at a time, so a company's month lies on as many pages
    start, end = usage.parse_month("2026-10")
    first = await usage.report_page(ledger["scope"], "2026-10", PageRequest(first=PAGE))
    last = first.items[-1]
    for after in (None, (last.company_sort_key, last.company_id, last.product_code)):
        plan = await _plan(*usage.page_sql(ledger["scope"], start, end, after, PAGE))
        if not db.is_postgres():
            details = "\n".join(plan)  # type: ignore[arg-type]
            assert "SCAN c" not in details and "SCAN u" not in details, details
            ledger_reads = [d for d in plan if "SEARCH u " in d]  # type: ignore[operator]
            assert len(ledger_reads) == 2, details  # a probe of each company, then its sums
            assert all("USING COVERING INDEX" in d for d in ledger_reads), details
            continue
        nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
        scans = [n for n in nodes if n.get("Relation Name") == "usage_line"]
        assert scans and all(n["Node Type"] == "Index Only Scan" for n in scans), scans
        walked = PAGE + 2  # every company has usage: the walk stops at its LIMIT
        assert _read(nodes, "company") <= 2 * walked, nodes  # the walk, then each by id
        # one probe of the month, a probe of each walked company, then its month (2 products x
        # DAYS)
        assert _read(nodes, "usage_line") <= 1 + walked * (1 + 2 * DAYS), nodes


async def test_a_usage_report_count_reads_the_ledger_of_cap_plus_one_companies(ledger, monkeypatch):
    cap = 7
    monkeypatch.setattr(usage, "COUNT_CAP", cap)
    assert await usage.report_count(ledger["scope"], "2026-10") == (cap, False)
    plan = await _plan(*usage.count_sql(ledger["scope"], *usage.parse_month("2026-10")))
    if not db.is_postgres():
        details = "\n".join(plan)  # type: ignore[arg-type]
        assert "SCAN c" not in details and "SCAN u" not in details, details
        return
    nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
    # the walk and the join by id stop after cap + 1 companies; each is probed, then summed
    assert _read(nodes, "company") <= 2 * (cap + 1), nodes
    assert _read(nodes, "usage_line") <= 1 + (cap + 1) * (1 + 2 * DAYS), nodes


async def test_a_usage_report_of_a_month_without_usage_walks_no_company(ledger):
    # a month before the instance (or before its first license) walked every company of it
    scope, month = ledger["scope"], "2026-09"
    assert (await usage.report_page(scope, month, PageRequest(first=PAGE))).items == []
    assert await usage.report_count(scope, month) == (0, True)
    companies = await Company.filter(instance_id=scope.instance_id).count()
    start, end = usage.parse_month(month)
    for sql, params in (
        usage.page_sql(scope, start, end, None, PAGE),
        usage.count_sql(scope, start, end),
    ):
        if db.is_postgres():
            nodes: list[dict[str, Any]] = await _plan(sql, params)  # type: ignore[assignment]
            assert _read(nodes, "company") == 0, nodes
            continue
        # SQLite's plan is the walk's either way: count the statement's virtual machine steps,
        # a few dozen per company walked
        sqlite = db.connection()._connection  # type: ignore[attr-defined]
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0

        await sqlite.set_progress_handler(step, 10)
        try:
            await db.fetch(sql, params)
        finally:
            await sqlite.set_progress_handler(None, 10)
        assert steps < companies, (steps, companies)


async def test_an_instances_all_group_is_one_probe_of_its_own_index(instance):
    # read by every filtered computers page, audit entry without a group and sync check: off
    # the (instance_id, path) index, it read every group of the instance (17 ms at 100,000)
    scope = instance["scope"]
    sql = f"SELECT g.path FROM static_group g WHERE {top_group('g')}"
    assert await groups.all_group_path(scope.instance_id) == await db.fetch_value(
        "SELECT path FROM static_group WHERE instance_id = ? AND parent_id IS NULL",
        [scope.instance_id],
    )
    plan = await _plan(sql, [scope.instance_id])
    if not db.is_postgres():
        details = "\n".join(plan)  # type: ignore[arg-type]
        assert "USING INDEX idx_static_group_all (instance_id=?)" in details, details
        return
    nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
    scans = [n for n in nodes if n.get("Relation Name") == "static_group"]
    assert [n.get("Index Name") for n in scans] == ["idx_static_group_all"], scans
    assert _read(nodes, "static_group") == 1, nodes


async def test_group_roots_are_read_off_the_path_index_one_row_each(instance):
    # the roots were every group of the instance joined to its parent: a sequential scan of
    # the instance's groups on PostgreSQL
    tree = instance["tree"]
    owner: Scope = instance["scope"]
    paths = [
        (await StaticGroup.get(company_id=company.id, kind=GroupKind.COMPANY)).path
        for company in (tree.msps[1], tree.all_customers[0], tree.customers[tree.msps[1].id][3])
    ]
    grants = {Area.COMPUTERS: tuple((path, Level.READ) for path in paths)}
    viewer = Scope(owner.instance_id, owner.user_id, owner=False, grants=grants)
    for scope, expected in ((owner, 1), (viewer, 2)):  # the MSP's customer is in its subtree
        listing = groups.roots_listing(scope)
        found = await listing.rows()
        assert len(found) == expected, found
        sql = f"SELECT g.* FROM {listing.source} WHERE {listing._where_sql()}"
        plan = await _plan(sql, list(listing.params))
        if not db.is_postgres():
            details = "\n".join(plan)  # type: ignore[arg-type]
            assert "(instance_id=? AND path=?)" in details, details
            continue
        nodes: list[dict[str, Any]] = plan  # type: ignore[assignment]
        assert _read(nodes, "static_group") == expected, nodes
    everything = await groups.roots(whole_instance(owner.instance_id))  # the top, no parent
    assert [g.kind for g in everything] == [GroupKind.ALL]
