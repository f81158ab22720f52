"""The usage ledger and its report: daily snapshots, seat-days, the GraphQL report, the CSV
route, and who may see them."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io

import pytest

from server.domain import usage
from server.domain.access import Scope
from server.domain.errors import InvalidInput
from server.models import License, db
from server.models.db import count_statements
from server.models.enums import Area, Level, LicenseState
from tests import factories
from tests.api.scoped_users import all_group, group_of, scoped_user
from tests.graphql_client import error_codes

REPORT = """query($month: String!, $first: Int, $after: String) {
  usageReport(month: $month, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { company { name } productCode productName seatDays averageSeats peakSeats } }
  } }"""
DAY = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)


def on(day: int, hour: int = 12) -> dt.datetime:
    return DAY.replace(day=day, hour=hour)


async def _ledger(client):
    """Two customers over three days of October: Entry seats 10, 12 (edited twice that day,
    14 last), 12; a second product on one day; plus licenses that never bill."""
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=2, computers_per_customer=0
    )
    first, second = tree.customers[tree.msps[0].id]
    entry = await factories.license(owner.instance_id, first, seats=10, key="U-ENTRY")
    await factories.license(
        owner.instance_id, first, seats=99, key="U-TRIAL", trial=True, product_code=102
    )
    await factories.license(
        owner.instance_id, second, seats=99, key="U-SUSP", state=LicenseState.SUSPENDED
    )
    await usage.record_snapshot(owner.instance_id, on(1))
    await License.filter(id=entry.id).update(seats=12)
    await usage.record_snapshot(owner.instance_id, on(2, 8))
    await License.filter(id=entry.id).update(seats=14)
    extra = await factories.license(
        owner.instance_id, first, seats=3, key="U-ADV", product_code=200, product_name="Advanced"
    )
    await usage.record_snapshot(owner.instance_id, on(2, 20))  # the day's last counts
    await License.filter(id=entry.id).update(seats=12)
    await extra.delete()
    assert await usage.take_scheduled_snapshot(owner.instance_id, on(4, 0))
    # day 3 was missed: nobody snapshotted it, and nothing invents it
    return owner, tree


async def test_seat_days_come_from_each_days_last_snapshot(client):
    owner, tree = await _ledger(client)
    data = await client.query(REPORT, {"month": "2026-10"}, owner.token)
    rows = [e["node"] for e in data["usageReport"]["edges"]]
    name = tree.customers[tree.msps[0].id][0].name
    assert rows == [
        {"company": {"name": name}, "productCode": 101, "productName": "ESET PROTECT Entry",
         "seatDays": 10 + 14 + 12, "averageSeats": 12.0, "peakSeats": 14},
        {"company": {"name": name}, "productCode": 200, "productName": "Advanced",
         "seatDays": 3, "averageSeats": 1.0, "peakSeats": 3},
    ]  # fmt: skip
    assert data["usageReport"]["totalCount"] == 2
    empty = await client.query(REPORT, {"month": "2026-09"}, owner.token)
    assert empty["usageReport"] == {
        "totalCount": 0, "pageInfo": {"hasNextPage": False, "endCursor": None}, "edges": [],
    }  # fmt: skip


async def test_the_report_pages_within_a_company(client):
    owner, _ = await _ledger(client)
    page = await client.query(REPORT, {"month": "2026-10", "first": 1}, owner.token)
    assert [e["node"]["productCode"] for e in page["usageReport"]["edges"]] == [101]
    assert page["usageReport"]["pageInfo"]["hasNextPage"] is True
    after = page["usageReport"]["pageInfo"]["endCursor"]
    rest = await client.query(REPORT, {"month": "2026-10", "after": after}, owner.token)
    assert [e["node"]["productCode"] for e in rest["usageReport"]["edges"]] == [200]
    assert rest["usageReport"]["pageInfo"]["hasNextPage"] is False


async def test_the_report_pages_across_many_companies_in_tree_order(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=3, customers_per_msp=4, computers_per_customer=0
    )
    for customer in tree.all_customers:
        await factories.license(owner.instance_id, customer, seats=customer.id % 7 + 1)
        await factories.license(owner.instance_id, customer, seats=2, product_code=300)
    await usage.record_snapshot(owner.instance_id, on(5))
    seen, after = [], None
    while True:
        page = await client.query(
            REPORT, {"month": "2026-10", "first": 5, "after": after}, owner.token
        )
        seen += [
            (e["node"]["company"]["name"], e["node"]["productCode"])
            for e in page["usageReport"]["edges"]
        ]
        if not page["usageReport"]["pageInfo"]["hasNextPage"]:
            break
        after = page["usageReport"]["pageInfo"]["endCursor"]
    names = sorted(c.name for c in tree.all_customers)
    assert seen == [(name, code) for name in names for code in (101, 300)]


async def test_the_scheduled_snapshot_is_taken_once_whatever_the_number_of_takers(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(owner.instance_id, msps=1, customers_per_msp=1)
    await factories.license(owner.instance_id, tree.all_customers[0], seats=4)
    taken = await asyncio.gather(
        *(usage.take_scheduled_snapshot(owner.instance_id, on(9, 0)) for _ in range(5))
    )
    assert sorted(taken) == [False] * 4 + [True]
    # a sync's snapshot the same day replaces it; the schedule does not come back that day
    await usage.record_snapshot(owner.instance_id, on(9, 10))
    assert not await usage.take_scheduled_snapshot(owner.instance_id, on(9, 23))
    rows = await db.fetch(
        "SELECT day, seats FROM usage_line WHERE instance_id = ?", [owner.instance_id]
    )
    assert [row["seats"] for row in rows] == [4]


def test_a_month_is_yyyy_mm_and_nothing_else():
    assert usage.parse_month("2026-02") == (dt.date(2026, 2, 1), dt.date(2026, 3, 1))
    assert usage.parse_month("2026-12") == (dt.date(2026, 12, 1), dt.date(2027, 1, 1))
    for bad in ("2026-13", "2026-00", "2026-1", "26-01", "2026-01-01", "", " 2026-01", "0000-01",
                "\uff12\uff10\uff12\uff16-01", "2026-01\n", None, 202601):  # fmt: skip
        with pytest.raises(InvalidInput):
            usage.parse_month(bad)  # type: ignore[arg-type]


async def test_a_bad_month_or_cursor_is_bad_user_input(client):
    owner = await factories.owner(client)
    for variables in (
        {"month": "2026-13"},
        {"month": "x" * 10_000},
        {"month": "2026-10", "after": "bm90IGEgY3Vyc29y"},
        {"month": "2026-10", "after": "WyJhIiwxXQ"},  # ["a",1]: two keys of three
        {"month": "2026-10", "after": "WzEsMiwzXQ"},  # [1,2,3]: the sort key is text
        {"month": "2026-10", "first": -1},
    ):
        body = await client.execute(REPORT, variables, owner.token)
        assert error_codes(body) == ["BAD_USER_INPUT"], (variables, body)


async def test_the_report_costs_the_same_statements_for_few_or_many_companies(client):
    counts = []
    for customers in (2, 12):
        owner = await factories.owner(client)
        tree = await factories.company_tree(
            owner.instance_id, msps=1, customers_per_msp=customers, computers_per_customer=0
        )
        for customer in tree.all_customers:
            await factories.license(owner.instance_id, customer)
        await usage.record_snapshot(owner.instance_id, on(3))
        with count_statements() as counter:
            await client.query(REPORT, {"month": "2026-10", "first": 50}, owner.token)
        counts.append(counter.count)
    # session, the page, its companies, totalCount
    assert counts == [4, 4]


async def test_the_report_counts_its_rows_up_to_the_cap(client, monkeypatch):
    # no counter holds a month's rows: counting them all read the whole month's ledger
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=3, computers_per_customer=0
    )
    for customer in tree.all_customers:
        await factories.license(owner.instance_id, customer)
        await factories.license(owner.instance_id, customer, product_code=300)
    await usage.record_snapshot(owner.instance_id, on(3))
    await usage.record_snapshot(owner.instance_id, on(4))
    query = """query($month: String!) {
      usageReport(month: $month, first: 0) { totalCount totalCountIsExact } }"""
    # 6 rows: 3 companies reach a cap of 2 (more companies than it), or 5 with their products
    for cap, expected in ((10, (6, True)), (6, (6, True)), (5, (5, False)), (2, (2, False))):
        monkeypatch.setattr(usage, "COUNT_CAP", cap)
        data = await client.query(query, {"month": "2026-10"}, owner.token)
        counted = data["usageReport"]
        assert (counted["totalCount"], counted["totalCountIsExact"]) == expected, cap


async def test_the_csv_holds_the_same_rows_as_the_report(client):
    owner, tree = await _ledger(client)
    response = await client.http.get(
        "/reports/usage.csv?month=2026-10", headers={"authorization": f"Bearer {owner.token}"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(response.text)))
    customer = tree.customers[tree.msps[0].id][0]
    assert lines == [
        ["company_public_id", "company", "custom_identifier", "product_code", "product",
         "seat_days", "average_seats", "peak_seats"],
        [customer.public_id, customer.name, "", "101", "ESET PROTECT Entry", "36", "12.00", "14"],
        [customer.public_id, customer.name, "", "200", "Advanced", "3", "1.00", "3"],
    ]  # fmt: skip


async def test_the_csv_never_hands_a_spreadsheet_a_formula(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(owner.instance_id, msps=1, customers_per_msp=1)
    customer = tree.all_customers[0]
    customer.name, customer.custom_identifier = '=HYPERLINK("http://x","a, b")', "+1"
    await customer.save(update_fields=["name", "custom_identifier"])
    await factories.license(owner.instance_id, customer, product_name="@SUM(A1)")
    await usage.record_snapshot(owner.instance_id, on(6))
    response = await client.http.get(
        "/reports/usage.csv?month=2026-10", headers={"authorization": f"Bearer {owner.token}"}
    )
    row = list(csv.reader(io.StringIO(response.text)))[1]
    assert row[1:5] == ['\'=HYPERLINK("http://x","a, b")', "'+1", "101", "'@SUM(A1)"]


async def test_the_csv_refuses_a_bad_month_and_a_missing_token(client):
    owner = await factories.owner(client)
    auth = {"authorization": f"Bearer {owner.token}"}
    for query in ("", "?month=2026-13", "?month=2026-1", "?month=%00", "?month=" + "9" * 5000):
        response = await client.http.get(f"/reports/usage.csv{query}", headers=auth)
        assert response.status_code == 400, query
    response = await client.http.get("/reports/usage.csv?month=2026-10")
    assert response.status_code == 401
    response = await client.http.get(
        "/reports/usage.csv?month=2026-10", headers={"authorization": "Bearer nope"}
    )
    assert response.status_code == 401


async def test_a_user_without_licenses_read_sees_no_usage(client):
    owner, tree = await _ledger(client)
    levels = {area: Level.WRITE for area in Area if area is not Area.LICENSES}
    blind = await scoped_user(client, owner.instance_id, [await group_of(tree.manager)], levels)
    data = await client.query(REPORT, {"month": "2026-10"}, blind.token)
    assert data["usageReport"]["totalCount"] == 0
    assert data["usageReport"]["edges"] == []
    response = await client.http.get(
        "/reports/usage.csv?month=2026-10", headers={"authorization": f"Bearer {blind.token}"}
    )
    assert response.status_code == 200
    assert response.text.splitlines() == [",".join(usage.CSV_HEADER)]
    other = await scoped_user(
        client,
        owner.instance_id,
        [await group_of(tree.customers[tree.msps[0].id][1])],
        {Area.LICENSES: Level.READ},
    )
    data = await client.query(REPORT, {"month": "2026-10"}, other.token)
    assert data["usageReport"]["edges"] == []  # its customer bills nothing (suspended only)


async def test_the_csv_is_written_a_page_of_rows_at_a_time(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(owner.instance_id, msps=2, customers_per_msp=3)
    for customer in tree.all_customers:
        await factories.license(owner.instance_id, customer)
    await usage.record_snapshot(owner.instance_id, on(7))
    scope = Scope.for_owner(owner.instance_id, 0, (await all_group(owner.instance_id)).path)
    whole = "".join([chunk async for chunk in usage.csv_chunks(scope, "2026-10")])
    with count_statements() as counter:
        chunks = [chunk async for chunk in usage.csv_chunks(scope, "2026-10", page_size=2)]
    assert "".join(chunks) == whole
    assert len(whole.splitlines()) == 1 + 6
    # three pages of two rows (and the look past the last): each its own statement and chunk
    assert counter.count == 3
    assert [len(chunk.splitlines()) for chunk in chunks if chunk] == [3, 2, 2]
