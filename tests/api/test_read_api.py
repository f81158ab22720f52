"""The read API: trees in tree order, Managed Customers, computers, Relay pagination edges and
hostile arguments, through the real app."""

import datetime as dt
import re

import pytest

from server.domain import counters, global_ids, hierarchy
from server.domain.listing import encode_cursor
from server.models import Company, Computer, StaticGroup
from server.models.db import count_statements
from server.models.enums import Area, CompanyType, Level, SetupState
from tests import factories
from tests.api.scoped_users import group_of, permission_set, scoped_user
from tests.graphql_client import OPERATIONS, error_codes

CUSTOMERS = """query($first: Int, $after: String, $last: Int, $before: String,
                     $status: [CustomerStatus!], $search: String) {
  managedCustomers(first: $first, after: $after, last: $last, before: $before,
                   status: $status, search: $search) {
    totalCount statusCounts { notSetUp normal unlinked }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id name customerStatus } }
  }
}"""


def names(connection):
    return [edge["node"]["name"] for edge in connection["edges"]]


@pytest.fixture
async def tenant(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(owner.instance_id, msps=2, customers_per_msp=3)
    return owner, tree


async def test_siblings_list_by_name_whatever_the_case_and_alphabet(client):
    owner = await factories.owner(client)
    manager = await hierarchy.add_company(
        owner.instance_id, "m", "Manager", CompanyType.MSP_MANAGER, None
    )
    for name in ["beta", "Alpha", 'Ärger, "quoted"', "alpha 2", "Zulu", "émile"]:
        await hierarchy.add_company(owner.instance_id, name, name, CompanyType.MSP, manager)
    data = await client.query(
        "{ rootCompanies { depth children { edges { node { name depth } } } } }",
        token=owner.token,
    )
    root = data["rootCompanies"][0]
    got = names(root["children"])
    assert got == sorted(got, key=lambda n: (n.casefold().encode(), n))
    assert got[:3] == ["Alpha", "alpha 2", "beta"]
    assert root["depth"] == 0 and {e["node"]["depth"] for e in root["children"]["edges"]} == {1}


async def test_descendants_walk_the_whole_subtree_in_tree_order_page_by_page(client, tenant):
    owner, tree = tenant
    seen, after = [], None
    while True:
        data = await client.operation(
            "Descendants",
            {"id": global_ids.encode("Company", tree.manager.id), "first": 4, "after": after},
            owner.token,
        )
        connection = data["node"]["descendants"]
        seen += [(e["node"]["name"], e["node"]["depth"]) for e in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert connection["totalCount"] == 8 == len(seen)
    expected = []
    for msp in tree.msps:
        expected.append((msp.name, 1))
        expected += [(c.name, 2) for c in tree.customers[msp.id]]
    assert seen == expected


async def test_descendants_filter_by_type_status_and_search(client, tenant):
    owner, tree = tenant
    first = tree.customers[tree.msps[0].id][0]
    await factories.set_status(first, SetupState.DONE)
    company_id = global_ids.encode("Company", tree.manager.id)
    run = lambda **v: client.operation("Descendants", {"id": company_id, **v}, owner.token)  # noqa: E731
    assert (await run(types=["MSP"]))["node"]["descendants"]["totalCount"] == 2
    normal = (await run(status=["NORMAL"]))["node"]["descendants"]
    assert names(normal) == [first.name]
    assert (await run(search="01-0"))["node"]["descendants"]["totalCount"] == 3


async def test_managed_customers_filter_by_status_and_count_every_status(client, tenant):
    owner, tree = tenant
    customers = tree.all_customers
    await factories.set_status(customers[0], SetupState.DONE)
    await factories.set_status(customers[1], SetupState.SKIPPED)
    await factories.set_status(customers[2], SetupState.DONE, unlinked=True)
    data = (await client.query(CUSTOMERS, {"status": ["NORMAL"]}, owner.token))["managedCustomers"]
    assert names(data) == [customers[0].name, customers[1].name]
    assert data["totalCount"] == 2
    assert data["statusCounts"] == {"notSetUp": 3, "normal": 2, "unlinked": 1}
    unlinked = await client.query(CUSTOMERS, {"status": ["UNLINKED"]}, owner.token)
    assert [e["node"]["customerStatus"] for e in unlinked["managedCustomers"]["edges"]] == [
        "UNLINKED"
    ]


async def test_status_counts_follow_the_search_but_not_the_status_filter(client, tenant):
    owner, tree = tenant
    await factories.set_status(tree.all_customers[0], SetupState.DONE)
    data = (
        await client.query(
            CUSTOMERS, {"status": ["UNLINKED"], "search": "customer 00"}, owner.token
        )
    )["managedCustomers"]
    assert data["totalCount"] == 0
    assert data["statusCounts"] == {"notSetUp": 2, "normal": 1, "unlinked": 0}


@pytest.mark.parametrize("term", ["%", "_", "\\", "'; DROP TABLE company; --"])
async def test_search_treats_wildcards_and_quotes_as_plain_text(client, tenant, term):
    owner, _ = tenant
    data = (await client.query(CUSTOMERS, {"search": term}, owner.token))["managedCustomers"]
    assert data["totalCount"] == 0
    assert await Company.filter(instance_id=owner.instance_id).count() == 9


async def test_an_empty_list_has_no_cursors_and_no_next_page(client):
    owner = await factories.owner(client)
    data = (await client.query(CUSTOMERS, {"first": 10}, owner.token))["managedCustomers"]
    assert data["edges"] == [] and data["totalCount"] == 0
    assert data["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }


async def test_exactly_one_page_has_no_next_page(client, tenant):
    owner, _ = tenant
    data = (await client.query(CUSTOMERS, {"first": 6}, owner.token))["managedCustomers"]
    assert len(data["edges"]) == 6 and data["pageInfo"]["hasNextPage"] is False


async def test_the_last_page_is_short_and_says_so(client, tenant):
    owner, _ = tenant
    first = (await client.query(CUSTOMERS, {"first": 4}, owner.token))["managedCustomers"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (
        await client.query(
            CUSTOMERS, {"first": 4, "after": first["pageInfo"]["endCursor"]}, owner.token
        )
    )["managedCustomers"]
    assert len(rest["edges"]) == 2
    assert rest["pageInfo"]["hasNextPage"] is False and rest["pageInfo"]["hasPreviousPage"]
    assert set(names(first)).isdisjoint(names(rest))


async def test_a_cursor_stays_valid_after_its_row_is_deleted_and_rows_are_added(client, tenant):
    owner, tree = tenant
    first = (await client.query(CUSTOMERS, {"first": 2}, owner.token))["managedCustomers"]
    second_row = tree.all_customers[1]
    await Computer.filter(company_id=second_row.id).delete()
    await StaticGroup.filter(company_id=second_row.id).delete()
    await second_row.delete()
    await hierarchy.add_company(
        owner.instance_id, "new", "Customer 00-00a", CompanyType.CUSTOMER, tree.msps[0]
    )
    rest = (
        await client.query(
            CUSTOMERS, {"first": 10, "after": first["pageInfo"]["endCursor"]}, owner.token
        )
    )["managedCustomers"]
    assert names(rest) == [c.name for c in tree.all_customers[2:]]


async def test_a_cursor_holding_a_value_of_the_wrong_type_is_bad_user_input(client, tenant):
    # the cursor is the client's to forge: a number where a text goes (or the reverse) must
    # not reach the database driver (PostgreSQL's refuses it: an internal error)
    owner, tree = tenant
    top = global_ids.encode("Company", tree.manager.id)
    for forged in (encode_cursor([7, 1]), encode_cursor(["a", "b"]), encode_cursor([1.5, 1])):
        for after, before in ((forged, None), (None, forged)):
            body = await client.execute(
                CUSTOMERS, {"after": after, "before": before, "last": before and 2}, owner.token
            )
            assert error_codes(body) == ["BAD_USER_INPUT"], body
        body = await client.execute(
            (OPERATIONS / "Descendants.graphql").read_text(),
            {"id": top, "first": 2, "after": forged},
            owner.token,
        )
        assert error_codes(body) == ["BAD_USER_INPUT"], body


async def test_backward_pagination_with_last_and_before(client, tenant):
    owner, tree = tenant
    data = (await client.query(CUSTOMERS, {"last": 2}, owner.token))["managedCustomers"]
    assert names(data) == [c.name for c in tree.all_customers[-2:]]
    assert data["pageInfo"]["hasPreviousPage"] is True
    before = (
        await client.query(
            CUSTOMERS, {"last": 3, "before": data["pageInfo"]["startCursor"]}, owner.token
        )
    )["managedCustomers"]
    assert names(before) == [c.name for c in tree.all_customers[-5:-2]]


@pytest.mark.parametrize(
    "variables",
    [
        {"first": 101},
        {"first": -1},
        {"last": 101},
        {"first": 1, "last": 1},
        {"after": "garbage"},
        {"after": "eyJ4Ijox"},  # base64 of a JSON object, not a cursor of this list
        {"after": "WzFd"},  # [1]: the wrong shape for this list
        {"before": "!!!"},
        {"after": "A" * 10_000},
    ],
    ids=["first-101", "negative", "last-101", "both", "garbage", "object", "short", "bang", "huge"],
)
async def test_bad_paging_arguments_are_bad_user_input_errors(client, tenant, variables):
    owner, _ = tenant
    body = await client.execute(CUSTOMERS, variables, owner.token)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert "Unexpected error" not in str(body)


async def test_first_zero_returns_no_edges_but_the_counts(client, tenant):
    owner, _ = tenant
    data = (await client.query(CUSTOMERS, {"first": 0}, owner.token))["managedCustomers"]
    assert data["edges"] == [] and data["totalCount"] == 6 and data["pageInfo"]["hasNextPage"]


async def test_node_refetches_every_type_and_nodes_keeps_order_and_nulls(client, tenant):
    owner, tree = tenant
    customer = tree.all_customers[0]
    pc = tree.computers[customer.id][0]
    ids = [
        global_ids.encode("Company", customer.id),
        global_ids.encode("Computer", pc.id),
        global_ids.encode("Company", 999_999_999),
    ]
    data = await client.query(
        """query($ids: [ID!]!) { nodes(ids: $ids) { __typename id
             ... on Company { name } ... on Computer { name group { name } } } }""",
        {"ids": ids},
        owner.token,
    )
    assert [n and n["__typename"] for n in data["nodes"]] == ["Company", "Computer", None]
    assert data["nodes"][1]["group"]["name"] == customer.name


@pytest.mark.parametrize(
    "bad_id",
    ["", "garbage", "Q29tcGFueTp4", "Rm9vOjE", "Q29tcGFueTotMQ", "x" * 300],
    ids=["empty", "garbage", "non-numeric", "unknown-type", "negative", "huge"],
)
async def test_an_id_that_does_not_decode_is_a_bad_user_input_error(client, tenant, bad_id):
    owner, _ = tenant
    body = await client.execute(
        "query($id: ID!) { node(id: $id) { id } }", {"id": bad_id}, owner.token
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_nodes_takes_at_most_a_hundred_ids(client, tenant):
    owner, _ = tenant
    ids = [global_ids.encode("Company", n) for n in range(1, 102)]
    body = await client.execute(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids}, owner.token
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_another_instances_objects_are_invisible_everywhere(client, tenant):
    owner, tree = tenant
    stranger = await factories.owner(client)
    foreign = [
        global_ids.encode("Company", tree.manager.id),
        global_ids.encode("Computer", tree.computers[tree.all_customers[0].id][0].id),
        global_ids.encode("StaticGroup", (await tree.manager.groups.all())[0].id),
        global_ids.encode("Instance", owner.instance_id),
        global_ids.encode("Account", owner.account_id),
    ]
    data = await client.query(
        """query($ids: [ID!]!) { nodes(ids: $ids) { id }
             rootCompanies { id } managedCustomers { totalCount statusCounts { notSetUp } }
             computers { totalCount } }""",
        {"ids": foreign},
        stranger.token,
    )
    assert data["nodes"] == [None] * len(foreign)
    assert data["rootCompanies"] == [] and data["computers"]["totalCount"] == 0
    assert data["managedCustomers"] == {"totalCount": 0, "statusCounts": {"notSetUp": 0}}
    group_filter = await client.query(
        "query($g: ID) { computers(group: $g) { totalCount edges { node { id } } } }",
        {"g": foreign[2]},
        stranger.token,
    )
    assert group_filter["computers"] == {"totalCount": 0, "edges": []}


async def test_computers_filter_by_group_status_and_search(client, tenant):
    owner, tree = tenant
    msp = tree.msps[0]
    customer = tree.customers[msp.id][0]
    now = dt.datetime.now(dt.UTC)
    pcs = tree.computers[customer.id]
    pcs[0].last_connected_at = now
    await pcs[0].save(update_fields=["last_connected_at"])
    pcs[1].last_connected_at = now - dt.timedelta(hours=2)
    await pcs[1].save(update_fields=["last_connected_at"])
    msp_group = global_ids.encode("StaticGroup", (await msp.groups.filter(kind="company"))[0].id)
    run = lambda **v: client.operation("Computers", v, owner.token)  # noqa: E731
    assert (await run(group=msp_group))["computers"]["totalCount"] == 6
    assert (await run(group=msp_group, recursive=False))["computers"]["totalCount"] == 0
    assert [
        e["node"]["connectionStatus"]
        for e in (await run(status=["CONNECTED"]))["computers"]["edges"]
    ] == ["CONNECTED"]
    assert (await run(status=["DELAYED"]))["computers"]["totalCount"] == 1
    assert (await run(status=["NEVER_CONNECTED"]))["computers"]["totalCount"] == 10
    assert (await run(status=[]))["computers"]["totalCount"] == 0
    assert (await run(search="PC-0-0"))["computers"]["totalCount"] == 2


@pytest.mark.parametrize("few", [True, False], ids=["read-then-sorted", "name-walk"])
async def test_a_status_filter_never_widens_a_viewers_computers(client, tenant, monkeypatch, few):
    # either plan the instance's counters pick (`computers.narrow`): the scope still decides
    from server.domain import computers

    monkeypatch.setattr(computers, "SMALL_SUBTREE", 10**9 if few else -1)
    owner, tree = tenant
    customer = tree.all_customers[0]
    viewer = await scoped_user(client, owner.instance_id, [await group_of(customer)])
    mine = {global_ids.encode("Computer", pc.id) for pc in tree.computers[customer.id]}
    query = """query($status: [ConnectionStatus!]) {
        computers(first: 100, status: $status) { totalCount edges { node { id } } } }"""
    for status in (["NEVER_CONNECTED"], ["NEVER_CONNECTED", "CONNECTED", "NOT_CONNECTED"]):
        seen = (await client.query(query, {"status": status}, viewer.token))["computers"]
        assert {e["node"]["id"] for e in seen["edges"]} == mine, status
        assert seen["totalCount"] == len(mine)


async def test_computer_counts_are_recursive_by_default(client, tenant):
    owner, tree = tenant
    data = await client.query(
        """query($id: ID!) { node(id: $id) { ... on Company {
             computerCount direct: computerCount(recursive: false)
             staticGroup { computerCount company { name } }
             computers(first: 1) { totalCount } } } }""",
        {"id": global_ids.encode("Company", tree.manager.id)},
        owner.token,
    )
    company = data["node"]
    assert company["computerCount"] == 12 and company["direct"] == 0
    assert company["staticGroup"] == {"computerCount": 12, "company": {"name": "Manager"}}
    assert company["computers"]["totalCount"] == 12


async def test_ancestors_and_parents_go_up_to_the_top(client, tenant):
    owner, tree = tenant
    customer = tree.all_customers[4]
    data = await client.query(
        """query($id: ID!) { node(id: $id) { ... on Company { parent { name }
             ancestors { name depth }
             staticGroup { depth ancestors { name } parent { name } } } } }""",
        {"id": global_ids.encode("Company", customer.id)},
        owner.token,
    )
    company = data["node"]
    assert company["parent"]["name"] == "MSP 01"
    assert company["ancestors"] == [{"name": "Manager", "depth": 0}, {"name": "MSP 01", "depth": 1}]
    group = company["staticGroup"]
    assert group["depth"] == 4
    assert [g["name"] for g in group["ancestors"]] == ["All", "Companies", "Manager", "MSP 01"]


async def test_the_group_tree_hides_shared_objects_groups(client, tenant):
    owner, _ = tenant
    data = await client.operation("GroupTree", {}, owner.token)
    companies = data["rootGroups"][0]["children"]["edges"][0]["node"]
    assert companies["name"] == "Companies" and companies["computerCount"] == 12
    manager_group = companies["children"]["edges"][0]["node"]
    assert manager_group["name"] == "Manager"
    children = await client.query(
        "query($id: ID!) { node(id: $id) { ... on StaticGroup { children { totalCount "
        "edges { node { name } } } } } }",
        {"id": manager_group["id"]},
        owner.token,
    )
    listed = [e["node"]["name"] for e in children["node"]["children"]["edges"]]
    assert listed == ["MSP 00", "MSP 01"]
    assert children["node"]["children"]["totalCount"] == 2


@pytest.mark.parametrize("term", ["\u0000", "tab\there", "x" * 201])
async def test_a_search_with_control_characters_or_too_long_is_refused(client, tenant, term):
    owner, _ = tenant
    body = await client.execute(CUSTOMERS, {"search": term}, owner.token)
    assert error_codes(body) == ["BAD_USER_INPUT"]


COMPANY_COMPUTERS = """query($id: ID!) { node(id: $id) { ... on Company {
  computers(first: 50) { totalCount edges { node { name } } } } } }"""


async def test_a_company_whose_group_is_out_of_sight_lists_no_computers(client, tenant):
    """Company.computers used to fall back to every computer the viewer may see when the
    company's own group did not load; it lists nothing of a group it cannot see."""
    from server.models import StaticGroup
    from server.models.enums import GroupKind

    owner, tree = tenant
    customer = tree.all_customers[0]
    query = COMPANY_COMPUTERS
    variables = {"id": global_ids.encode("Company", customer.id)}
    seen = (await client.query(query, variables, owner.token))["node"]["computers"]
    assert seen["totalCount"] == len(tree.computers[customer.id]) > 0
    # its group no longer loads as the company's own (kind COMPANY): out of the viewer's sight
    await StaticGroup.filter(company_id=customer.id, kind=GroupKind.COMPANY).update(
        kind=GroupKind.CUSTOM
    )
    seen = (await client.query(query, variables, owner.token))["node"]["computers"]
    assert seen == {"totalCount": 0, "edges": []}


CAPPED = """query($id: ID!, $search: String) {
  managedCustomers(first: 1, search: $search) {
    totalCount totalCountIsExact statusCounts { notSetUp normal unlinked exact } }
  node(id: $id) { ... on Company { descendants(first: 1, search: $search) {
    totalCount totalCountIsExact } } } }"""


async def test_counts_under_a_search_stop_at_a_thousand_and_say_so(client, tenant):
    """A search cannot use the counters: its counts read at most 1,001 rows and report
    whether they are exact; without a search the counters answer exactly, however many."""
    from server.domain import counters, tree_paths

    owner, tree = tenant
    msp = tree.msps[0]
    rows = [
        Company(
            instance_id=owner.instance_id,
            public_id=f"bulk-{n}",
            name=f"Bulk {n:04d}",
            sort_name=f"bulk {n:04d}",
            type=CompanyType.CUSTOMER,
            parent_id=msp.id,
            path=f"{msp.path}{10**8 + n}/",
            sort_key=msp.sort_key + tree_paths.sort_segment(f"bulk {n:04d}", 10**8 + n),
            depth=msp.depth + 1,
        )
        for n in range(1001)
    ]
    await Company.bulk_create(rows, batch_size=250)
    await counters.recount(owner.instance_id)  # written directly, as a restore would
    variables = {"id": global_ids.encode("Company", tree.manager.id)}
    data = await client.query(CAPPED, {**variables, "search": "bulk"}, owner.token)
    assert data["managedCustomers"]["totalCount"] == 1000
    assert data["managedCustomers"]["totalCountIsExact"] is False
    assert data["managedCustomers"]["statusCounts"] == {
        "notSetUp": 1000,
        "normal": 0,
        "unlinked": 0,
        "exact": False,
    }
    assert data["node"]["descendants"] == {"totalCount": 1000, "totalCountIsExact": False}
    data = await client.query(CAPPED, {**variables, "search": "bulk 000"}, owner.token)
    assert data["managedCustomers"]["totalCount"] == 10
    assert data["managedCustomers"]["totalCountIsExact"] is True
    assert data["managedCustomers"]["statusCounts"]["exact"] is True
    assert data["node"]["descendants"] == {"totalCount": 10, "totalCountIsExact": True}
    customers = 1001 + len(tree.all_customers)
    data = await client.query(CAPPED, variables, owner.token)
    assert data["managedCustomers"]["totalCount"] == customers
    assert data["managedCustomers"]["totalCountIsExact"] is True
    assert data["managedCustomers"]["statusCounts"]["notSetUp"] == customers
    descendants = customers + len(tree.msps)
    assert data["node"]["descendants"] == {"totalCount": descendants, "totalCountIsExact": True}


COMPUTER_COUNTS = """query($id: ID!) { node(id: $id) { ... on Company {
    computerCount direct: computerCount(recursive: false) staticGroup { computerCount } } } }"""


def reads_computers(statements: list[str]) -> list[str]:
    return [s for s in statements if re.search(r"\bcomputer\b", s)]


async def test_computer_counts_read_counter_rows_not_computers(client, tenant):
    owner, tree = tenant
    variables = {"id": global_ids.encode("Company", tree.manager.id)}
    with count_statements() as counter:
        data = await client.query(COMPUTER_COUNTS, variables, owner.token)
    assert data["node"] == {"computerCount": 12, "direct": 0, "staticGroup": {"computerCount": 12}}
    assert counter.count > 0 and reads_computers(counter.statements) == []
    customer = {"id": global_ids.encode("Company", tree.customers[tree.msps[0].id][0].id)}
    with count_statements() as counter:
        data = await client.query(COMPUTER_COUNTS, customer, owner.token)
    assert data["node"] == {"computerCount": 2, "direct": 2, "staticGroup": {"computerCount": 2}}
    assert reads_computers(counter.statements) == []
    # a listing's unfiltered totalCount too: what it adds to the page reads no computer
    page = """query($id: ID!) { node(id: $id) { ... on Company {
        computers(first: 1) { %s edges { cursor } } } } }"""
    with count_statements() as without_count:
        await client.query(page % "", variables, owner.token)
    with count_statements() as with_count:
        data = await client.query(page % "totalCount totalCountIsExact", variables, owner.token)
    assert data["node"]["computers"]["totalCount"] == 12
    assert data["node"]["computers"]["totalCountIsExact"] is True
    added = with_count.statements[len(without_count.statements) :]
    assert len(added) == 1 and reads_computers(added) == []


async def test_a_viewer_counts_the_computers_of_each_of_its_permission_sets(client, tenant):
    """Two sets on two customers of an MSP (and one to see the MSP without its computers): the
    MSP's counts are the sum of both customers', whatever else lies below it."""
    owner, tree = tenant
    msp = tree.msps[0]
    first, second, _ = tree.customers[msp.id]
    see_companies = {Area.COMPANIES: Level.READ, Area.GROUPS: Level.READ}
    sets = [
        await permission_set(owner.instance_id, [await group_of(msp)], see_companies),
        await permission_set(owner.instance_id, [await group_of(first)]),
        await permission_set(owner.instance_id, [await group_of(second)]),
    ]
    viewer = await scoped_user(client, owner.instance_id, [await group_of(msp)], sets=sets)
    data = await client.query(
        """query($id: ID!) {
             node(id: $id) { ... on Company { computerCount
               direct: computerCount(recursive: false) staticGroup { computerCount }
               computers(first: 0) { totalCount } } }
             computers(first: 0) { totalCount totalCountIsExact } }""",
        {"id": global_ids.encode("Company", msp.id)},
        viewer.token,
    )
    assert data["node"] == {
        "computerCount": 4,
        "direct": 0,
        "staticGroup": {"computerCount": 4},
        "computers": {"totalCount": 4},
    }
    assert data["computers"] == {"totalCount": 4, "totalCountIsExact": True}


async def test_computer_counts_under_a_filter_stop_at_a_thousand_and_say_so(client, tenant):
    owner, tree = tenant
    customer = tree.customers[tree.msps[0].id][0]
    group = await StaticGroup.get(company_id=customer.id, kind="company")
    rows = [
        Computer(
            instance_id=owner.instance_id,
            group_id=group.id,
            company_id=customer.id,
            name=f"bulk-{n}",
            sort_name=f"bulk-{n}",
            hardware_id=f"bulk-{n}",
        )
        for n in range(1001)
    ]
    await Computer.bulk_create(rows, batch_size=250)
    await counters.recount(owner.instance_id, count_held=True)  # written directly
    query = """query($status: [ConnectionStatus!], $search: String) {
        computers(first: 0, status: $status, search: $search) { totalCount totalCountIsExact } }"""
    run = lambda **v: client.query(query, v, owner.token)  # noqa: E731
    assert (await run())["computers"] == {"totalCount": 1013, "totalCountIsExact": True}
    capped = {"totalCount": 1000, "totalCountIsExact": False}
    assert (await run(status=["NEVER_CONNECTED"]))["computers"] == capped
    assert (await run(search="bulk"))["computers"] == capped
    assert (await run(search="pc-"))["computers"] == {"totalCount": 12, "totalCountIsExact": True}
