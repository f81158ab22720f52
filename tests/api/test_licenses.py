"""Licenses through the API: a company's licenses and seat usage, the root list and its
filters, refetching, and a viewer without LICENSES READ seeing none of it."""

from __future__ import annotations

import datetime as dt

from server.models.enums import Area, Level, LicenseState
from tests import factories
from tests.api.scoped_users import group_of, permission_set, scoped_user
from tests.graphql_client import error_codes

LICENSES = """query($first: Int, $after: String, $last: Int, $before: String,
  $states: [LicenseState!], $days: Int, $over: Boolean, $search: String) {
  licenses(first: $first, after: $after, last: $last, before: $before, states: $states,
           expiringWithinDays: $days, overUsed: $over, search: $search) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { node { id publicLicenseKey seats activated overUsed state trial expiresAt
                   company { id name } } } } }"""
COMPANY = """query($id: ID!, $recursive: Boolean!) { node(id: $id) { ... on Company {
  licenses(first: 10) { totalCount edges { node { publicLicenseKey } } }
  seatUsage(recursive: $recursive) { seats activated computers protected overUsed } } } }"""


async def _world(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=2, computers_per_customer=2
    )
    msp = tree.msps[0]
    first, second = tree.customers[msp.id]
    now = dt.datetime.now(dt.UTC)
    # one computer of `first` connected, one never
    computer = tree.computers[first.id][0]
    await factories.check_in(computer, now)
    made = {
        "a": await factories.license(
            owner.instance_id, first, seats=10, activated=12, key="KEY-A", product_name="Entry"
        ),
        "b": await factories.license(
            owner.instance_id, first, seats=5, activated=1, key="KEY-B",
            state=LicenseState.SUSPENDED, expires_at=now + dt.timedelta(days=3),
        ),
        "c": await factories.license(
            owner.instance_id, second, seats=20, activated=3, key="KEY-C",
            product_name="Advanced", trial=True, expires_at=now + dt.timedelta(days=40),
        ),
        "d": await factories.license(
            owner.instance_id, msp, seats=7, activated=7, key="KEY-D",
            state=LicenseState.EXPIRED, expires_at=now - dt.timedelta(days=2),
        ),
    }  # fmt: skip
    return owner, tree, made


def keys(data):
    return [e["node"]["publicLicenseKey"] for e in data["licenses"]["edges"]]


async def test_the_owner_lists_and_filters_every_license(client):
    owner, tree, _ = await _world(client)
    everything = await client.query(LICENSES, {}, owner.token)
    assert keys(everything) == ["KEY-A", "KEY-B", "KEY-C", "KEY-D"]
    assert everything["licenses"]["totalCount"] == 4
    first = everything["licenses"]["edges"][0]["node"]
    assert (first["seats"], first["activated"], first["overUsed"]) == (10, 12, True)
    assert first["company"]["name"] == tree.customers[tree.msps[0].id][0].name

    async def filtered(**variables):
        return keys(await client.query(LICENSES, variables, owner.token))

    assert await filtered(over=True) == ["KEY-A"]
    assert await filtered(over=False) == ["KEY-B", "KEY-C", "KEY-D"]
    assert await filtered(states=["SUSPENDED", "EXPIRED"]) == ["KEY-B", "KEY-D"]
    assert await filtered(states=[]) == []
    assert await filtered(days=7) == ["KEY-B"]
    assert await filtered(days=60) == ["KEY-B", "KEY-C"]
    assert await filtered(search="advanced") == ["KEY-C"]
    assert await filtered(search="key-d") == ["KEY-D"]
    assert await filtered(search="Customer 00-01") == ["KEY-C"]  # the company's name
    assert await filtered(search="100%_") == []


async def test_pages_follow_the_cursor(client):
    owner, _, _ = await _world(client)
    page = await client.query(LICENSES, {"first": 3}, owner.token)
    assert keys(page) == ["KEY-A", "KEY-B", "KEY-C"]
    assert page["licenses"]["pageInfo"]["hasNextPage"] is True
    after = page["licenses"]["pageInfo"]["endCursor"]
    rest = await client.query(LICENSES, {"first": 3, "after": after}, owner.token)
    assert keys(rest) == ["KEY-D"]
    assert rest["licenses"]["pageInfo"]["hasNextPage"] is False
    before = rest["licenses"]["pageInfo"]["endCursor"]
    back = await client.query(LICENSES, {"last": 2, "before": before}, owner.token)
    assert keys(back) == ["KEY-B", "KEY-C"]
    assert back["licenses"]["pageInfo"]["hasPreviousPage"] is True


async def test_a_company_shows_its_own_licenses_and_its_seat_usage(client):
    owner, tree, _ = await _world(client)
    msp = tree.msps[0]
    first = tree.customers[msp.id][0]
    data = await client.query(
        COMPANY, {"id": factories.global_id(first), "recursive": True}, owner.token
    )
    node = data["node"]
    assert [e["node"]["publicLicenseKey"] for e in node["licenses"]["edges"]] == ["KEY-A", "KEY-B"]
    # only ACTIVE licenses order seats: A; computers: both of the customer, one connected
    assert node["seatUsage"] == {
        "seats": 10, "activated": 12, "computers": 2, "protected": 1, "overUsed": True,
    }  # fmt: skip
    data = await client.query(
        COMPANY, {"id": factories.global_id(msp), "recursive": True}, owner.token
    )
    # the MSP's subtree: A and C are in force (D expired); its two customers' four computers
    assert data["node"]["seatUsage"] == {
        "seats": 30, "activated": 15, "computers": 4, "protected": 1, "overUsed": False,
    }  # fmt: skip
    assert data["node"]["licenses"]["totalCount"] == 1  # its own: D
    data = await client.query(
        COMPANY, {"id": factories.global_id(msp), "recursive": False}, owner.token
    )
    assert data["node"]["seatUsage"] == {
        "seats": 0, "activated": 0, "computers": 0, "protected": 0, "overUsed": False,
    }  # fmt: skip


async def recounted(instance_id: int, prefixes: dict[Area, list[str]]) -> dict[str, object]:
    """Seat usage counted from every license and computer (no counter), of those whose path
    lies under one of the viewer's `prefixes` per area."""
    from server.models import db

    def seen(path: str, area: Area) -> bool:
        return any(path.startswith(prefix) for prefix in prefixes[area])

    licenses = await db.fetch(
        "SELECT c.path, l.seats, l.activated FROM license l JOIN company c "
        "ON c.id = l.company_id WHERE l.instance_id = ? AND l.state = 'ACTIVE'",
        [instance_id],
    )
    machines = await db.fetch(
        "SELECT g.path, m.announced_status FROM computer m JOIN static_group g "
        "ON g.id = m.group_id WHERE m.instance_id = ?",
        [instance_id],
    )
    mine = [row for row in licenses if seen(row["path"], Area.LICENSES)]
    held = [row for row in machines if seen(row["path"], Area.COMPUTERS)]
    seats, activated = sum(r["seats"] for r in mine), sum(r["activated"] for r in mine)
    return {
        "seats": seats,
        "activated": activated,
        "computers": len(held),
        "protected": sum(r["announced_status"] in ("CONNECTED", "DELAYED") for r in held),
        "overUsed": activated > seats,
    }


async def test_seat_usage_over_a_subtree_is_what_a_recount_finds_of_what_the_viewer_sees(client):
    """The top company's seat usage, as its owner and as a user who reads the licenses of one
    customer and the computers of the other MSP: each the count of what it may see, after
    computers connected, went quiet and left, and licenses were added."""
    owner, tree, _ = await _world(client)
    now = dt.datetime.now(dt.UTC)
    first_msp, second_msp = tree.msps
    for n, computer in enumerate(tree.computers[tree.customers[second_msp.id][0].id]):
        await factories.check_in(computer, now - dt.timedelta(seconds=600 * n))  # one delayed
    await factories.license(owner.instance_id, tree.manager, seats=100, activated=4)
    await factories.license(owner.instance_id, tree.customers[second_msp.id][1], seats=8)
    later = now + dt.timedelta(days=2)  # the first connected computer is not connected now
    await factories.check_in(tree.computers[tree.customers[second_msp.id][1].id][0], later)
    top = await group_of(tree.manager)
    licensed = await group_of(tree.customers[first_msp.id][0])
    counted = await group_of(second_msp)
    grants = [(top, Area.COMPANIES), (licensed, Area.LICENSES), (counted, Area.COMPUTERS)]
    sets = [await permission_set(owner.instance_id, [g], {area: Level.READ}) for g, area in grants]
    viewer = await scoped_user(client, owner.instance_id, [top], sets=sets)
    for token, prefixes in (
        (owner.token, {Area.LICENSES: [top.path], Area.COMPUTERS: [top.path]}),
        (viewer.token, {Area.LICENSES: [licensed.path], Area.COMPUTERS: [counted.path]}),
    ):
        data = await client.query(
            COMPANY, {"id": factories.global_id(tree.manager), "recursive": True}, token
        )
        expected = await recounted(owner.instance_id, prefixes)
        assert data["node"]["seatUsage"] == expected
        assert expected["computers"] and expected["seats"]


async def test_a_license_is_refetched_by_its_id(client):
    owner, _, made = await _world(client)
    gid = factories.global_id(made["c"])
    data = await client.query(
        "query($id: ID!) { node(id: $id) { id ... on License { publicLicenseKey trial "
        "productName company { name } } } }",
        {"id": gid},
        owner.token,
    )
    assert data["node"]["publicLicenseKey"] == "KEY-C"
    assert data["node"]["trial"] is True


async def test_a_user_without_licenses_read_sees_no_license_anywhere(client):
    owner, tree, made = await _world(client)
    msp = tree.msps[0]
    levels = {area: Level.WRITE for area in Area if area is not Area.LICENSES}
    blind = await scoped_user(client, owner.instance_id, [await group_of(msp)], levels)
    data = await client.query(LICENSES, {}, blind.token)
    assert data["licenses"] == {
        "totalCount": 0, "edges": [],
        "pageInfo": {"hasNextPage": False, "hasPreviousPage": False, "endCursor": None},
    }  # fmt: skip
    first = tree.customers[msp.id][0]
    data = await client.query(
        COMPANY, {"id": factories.global_id(first), "recursive": True}, blind.token
    )
    assert data["node"]["licenses"] == {"totalCount": 0, "edges": []}
    # computers stay visible (COMPUTERS), seats do not
    assert data["node"]["seatUsage"] == {
        "seats": 0, "activated": 0, "computers": 2, "protected": 1, "overUsed": False,
    }  # fmt: skip
    data = await client.query(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        {"ids": [factories.global_id(m) for m in made.values()]},
        blind.token,
    )
    assert data["nodes"] == [None] * 4


async def test_licenses_read_on_one_msp_shows_only_its_subtree(client):
    owner, tree, _ = await _world(client)
    reader = await scoped_user(
        client,
        owner.instance_id,
        [await group_of(tree.customers[tree.msps[0].id][1])],
        {Area.LICENSES: Level.READ},
    )
    assert keys(await client.query(LICENSES, {}, reader.token)) == ["KEY-C"]


async def test_bad_filters_and_cursors_are_bad_user_input(client):
    owner, _, _ = await _world(client)
    for variables in (
        {"days": -1},
        {"days": 100_000},
        {"first": 101},
        {"after": "not a cursor"},
        {"search": "x" * 1000},
        {"search": "a\x00b"},
    ):
        body = await client.execute(LICENSES, variables, owner.token)
        assert error_codes(body) == ["BAD_USER_INPUT"], (variables, body)
    body = await client.execute(LICENSES, {})
    assert error_codes(body) == ["UNAUTHENTICATED"]
