"""How many SQL statements the heaviest pages cost: pinned, and the same whatever the size."""

from server.domain import accounts
from server.models.db import count_statements
from server.models.enums import Area, Level, Service
from tests import factories
from tests.api.scoped_users import group_of, permission_set


async def statements_of(client, operation, variables, token):
    with count_statements() as counter:
        await client.operation(operation, variables, token)
    return counter.count


async def test_the_managed_customers_page_costs_the_same_for_ten_or_sixty_customers(client):
    small = await factories.owner(client)
    await factories.company_tree(
        small.instance_id, msps=2, customers_per_msp=5, computers_per_customer=1
    )
    large = await factories.owner(client)
    await factories.company_tree(
        large.instance_id, msps=4, customers_per_msp=15, computers_per_customer=1
    )
    variables = {"first": 50}
    counts = [
        await statements_of(client, "ManagedCustomers", variables, t)
        for t in (small.token, large.token)
    ]
    # session, page, totalCount, statusCounts, parents, groups, computer counts
    assert counts == [7, 7]


async def test_a_four_level_company_tree_costs_two_statements_per_level(client):
    small = await factories.owner(client)
    await factories.company_tree(
        small.instance_id, msps=2, customers_per_msp=2, computers_per_customer=0
    )
    large = await factories.owner(client)
    await factories.company_tree(
        large.instance_id, msps=6, customers_per_msp=8, computers_per_customer=0
    )
    counts = [
        await statements_of(client, "CompanyTree", {"first": 20}, t)
        for t in (small.token, large.token)
    ]
    # session, roots, then children page + count for each of three levels
    assert counts == [8, 8]


async def test_the_group_tree_with_computer_counts_does_not_grow_with_the_tree(client):
    small = await factories.owner(client)
    await factories.company_tree(small.instance_id, msps=1, customers_per_msp=2)
    large = await factories.owner(client)
    await factories.company_tree(large.instance_id, msps=5, customers_per_msp=6)
    counts = [await statements_of(client, "GroupTree", {}, t) for t in (small.token, large.token)]
    assert counts[0] == counts[1]


async def test_nodes_cost_one_statement_per_type_whatever_the_number_of_ids(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=2, computers_per_customer=0
    )
    create = """mutation($input: CreateInstallerInput!) { createInstaller(input: $input) {
      installer { id } } }"""
    installers = []
    for customer in tree.all_customers:
        variables = {"input": {"companyId": factories.global_id(customer)}}
        payload = await client.query(create, variables, owner.token)
        installers.append(payload["createInstaller"]["installer"]["id"])
    groups = [await group_of(c) for c in tree.all_customers]
    sets = [
        factories.global_id(await permission_set(owner.instance_id, [g], {Area.USERS: Level.READ}))
        for g in groups
    ]
    log = await client.query("{ auditLog(first: 4) { edges { node { id } } } }", token=owner.token)
    entries = [e["node"]["id"] for e in log["auditLog"]["edges"]]
    nodes = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
    counts = []
    for n in (1, 4):
        ids = installers[:n] + sets[:n] + entries[:n]
        with count_statements() as counter:
            found = await client.query(nodes, {"ids": ids}, owner.token)
        assert [node["id"] for node in found["nodes"]] == ids
        counts.append(counter.count)
    # the session, then one statement each for installers, permission sets, audit entries
    assert counts == [4, 4]


async def test_licenses_and_seat_usage_of_a_page_cost_the_same_for_ten_or_sixty_customers(client):
    counts = []
    for msps, customers in ((2, 5), (4, 15)):
        owner = await factories.owner(client)
        tree = await factories.company_tree(
            owner.instance_id, msps=msps, customers_per_msp=customers, computers_per_customer=1
        )
        for customer in tree.all_customers:
            for seats in (3, 9):
                await factories.license(owner.instance_id, customer, seats=seats)
        counts.append(await statements_of(client, "SeatUsage", {"first": 50}, owner.token))
        counts.append(await statements_of(client, "Licenses", {"first": 50}, owner.token))
    # SeatUsage: session, page, totalCount, licenses pages, their counts, the seat usage
    # (recursive: counter rows, one statement); Licenses: session, page, totalCount, companies
    assert counts == [6, 4, 6, 4]


async def test_a_sign_in_from_a_known_address_costs_what_it_did_before_addresses_were_known(
    client,
):
    email = factories.unique_email("counted")
    await accounts.create_account(email, factories.PASSWORD, [Service.EBA])

    async def statements_of_login(password: str) -> int:
        variables = {"input": {"email": email, "password": password, "via": "EBA"}}
        with count_statements() as counter:
            await client.query(factories.LOGIN, variables)
        return counter.count

    # known?, count the minute (upsert, prune), the account, the session, take back, viewer;
    # from an address not known yet also: count the hour (upsert, prune), take it back, and
    # remember the address (upsert, prune); a failure: no session, take back nor viewer, but
    # the audit's look-up
    first = await statements_of_login(factories.PASSWORD)
    usual = await statements_of_login(factories.PASSWORD)
    typo = await statements_of_login("typo")
    assert (first, usual, typo) == (12, 7, 5)
