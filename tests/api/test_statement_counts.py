"""How many SQL statements the heaviest pages cost: pinned, and the same whatever the size."""

from server.models.db import count_statements
from tests import factories


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
