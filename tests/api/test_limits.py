"""Query limits: each refusal is a clear error before anything runs (not even the session is
read); the cost of every query is reported in `extensions.cost`, counted like GitHub's node
limit (connections multiply what their rows select by the page they may return)."""

import pytest

from graphql import get_introspection_query, parse
from server.api.limits import measure_operation
from server.api.schema import schema
from server.models.db import count_statements
from tests import factories
from tests.graphql_client import error_codes

LIMIT = 500_000

# What a tree view sends: two levels of 100, a third of 5, a handful of fields at each level.
TREE_VIEW = """query TreeView($first: Int = 100, $leaves: Int = 5) {
  rootCompanies {
    id name type depth customerStatus
    children(first: $first) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node {
        id name type depth customerStatus staticGroup { id computerCount }
        children(first: $first) {
          totalCount pageInfo { hasNextPage endCursor }
          edges { cursor node {
            id name type depth customerStatus staticGroup { id computerCount }
            children(first: $leaves) {
              totalCount pageInfo { hasNextPage endCursor }
              edges { cursor node { id name type depth customerStatus staticGroup { id } } }
            }
          } }
        }
      } }
    }
  }
}"""

DESCENDANTS_WALK = (
    "descendants { edges { node { id descendants { edges { node { id "
    "descendants { edges { node { id name } } } } } } } } }"
)


async def post(client, query, token, variables=None, **extra):
    return await client.http.post(
        "/graphql",
        json={"query": query, "variables": variables or {}, **extra},
        headers={"authorization": f"Bearer {token}"},
    )


def cost(query: str, variables: dict | None = None) -> int:
    return measure_operation(schema._schema, parse(query), None, variables or {}, 12).once


@pytest.fixture(scope="module")
async def owner(client):
    owner = await factories.owner(client)
    await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=2, computers_per_customer=0
    )
    return owner


async def refused_without_running(client, owner, query, variables=None):
    with count_statements() as counter:
        body = (await post(client, query, owner.token, variables)).json()
    assert counter.count == 0, counter.statements  # not even the session was read
    assert "data" not in body
    return body


async def test_the_tree_a_front_end_loads_100_by_100_by_5_passes(client, owner):
    body = (await post(client, TREE_VIEW, owner.token)).json()
    assert "errors" not in body, body
    [manager] = body["data"]["rootCompanies"]
    msps = [edge["node"] for edge in manager["children"]["edges"]]
    assert [msp["children"]["totalCount"] for msp in msps] == [2, 2]
    # per row: an edge, its company and the company's group; per connection: itself, pageInfo
    leaves = 2 + 5 * 3
    expected = 1 + 2 + 100 * (3 + 2 + 100 * (3 + leaves))
    assert body["extensions"]["cost"] == {"requested": expected, "limit": LIMIT}
    assert expected == 200_503


async def test_a_tree_100_by_100_by_100_is_refused_with_its_cost(client, owner):
    body = await refused_without_running(client, owner, TREE_VIEW, {"leaves": 100})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] > 1_000_000
    assert str(error["extensions"]["cost"]) in error["message"]


async def test_thirty_aliases_of_a_walk_without_first_are_refused_before_anything_runs(
    client, owner
):
    roots = await client.query("{ rootCompanies { id } }", token=owner.token)
    manager = roots["rootCompanies"][0]["id"]
    walk = f'node(id: "{manager}") {{ ... on Company {{ {DESCENDANTS_WALK} }} }}'
    aliases = " ".join(f"a{n}: {walk}" for n in range(30))
    body = await refused_without_running(client, owner, f"{{ {aliases} }}")
    assert error_codes(body) == ["QUERY_TOO_COSTLY"]
    # a connection without `first` counts the default page of 50 at every level
    assert body["errors"][0]["extensions"]["cost"] == 30 * cost(f"{{ {walk} }}")
    one = f"{{ {walk} }}"
    assert cost(one) == cost(one.replace("descendants", "descendants(first: 50)"))


async def test_a_variables_default_counts_as_given(client, owner):
    query = TREE_VIEW.replace("$leaves: Int = 5", "$leaves: Int = 100")
    body = await refused_without_running(client, owner, query)
    assert error_codes(body) == ["QUERY_TOO_COSTLY"]


async def test_a_variable_given_overrides_its_default(client, owner):
    query = TREE_VIEW.replace("$leaves: Int = 5", "$leaves: Int = 100")
    body = (await post(client, query, owner.token, {"leaves": 5})).json()
    assert "errors" not in body, body
    assert cost(query, {"leaves": 5}) == cost(TREE_VIEW)
    refused = await refused_without_running(client, owner, TREE_VIEW, {"leaves": 100})
    assert error_codes(refused) == ["QUERY_TOO_COSTLY"]


def test_a_connection_is_known_by_its_type_not_by_the_arguments_given():
    page = "{ rootCompanies { children%s { edges { node { id } } } } }"
    assert cost(page % "") == cost(page % "(first: 50)") == 1 + 1 + 50 * 2
    assert cost(page % "(types: [CUSTOMER])") == cost(page % "")
    assert cost(page % "(first: 3)") == 1 + 1 + 3 * 2


def test_the_cost_counts_the_objects_a_query_may_return():
    # the connection, its pageInfo once, then an edge, a node and its parent per row
    query = (
        "{ managedCustomers(first: 10) { pageInfo { endCursor } "
        "edges { node { parent { id } } } } }"
    )
    assert cost(query) == 1 + 1 + 10 * 3
    assert cost("query($n: Int) { managedCustomers(last: $n) { totalCount } }", {"n": 10}) == 1
    assert cost("{ viewer { via } }") == 1
    assert cost("{ __typename }") == 0


def test_page_sizes_the_api_refuses_cannot_lower_the_cost():
    query = "query($n: Int) { managedCustomers(first: $n) { edges { node { id } } } }"
    assert cost(query, {"n": 100.0}) == cost(query, {"n": 100}) == 1 + 100 * 2
    assert cost(query, {"n": "100"}) == cost(query, {"n": True}) == 1 + 100 * 2
    assert cost(query, {"n": 10**9}) == 1 + 100 * 2
    assert cost(query, {"n": None}) == cost(query) == 1 + 50 * 2  # null: the default page


def test_nodes_counts_each_id():
    ids = ", ".join(f'"id{n}"' for n in range(40))
    assert cost(f"{{ nodes(ids: [{ids}]) {{ id }} }}") == 40
    query = (
        "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Company { children { totalCount } } } }"
    )
    assert cost(query, {"ids": ["a"] * 7}) == 7 * 2


def test_fragments_count_like_the_fields_they_spread():
    inline = "{ managedCustomers(first: 20) { edges { node { id parent { id } } } } }"
    named = (
        "query { managedCustomers(first: 20) { ...Page } } "
        "fragment Page on ManagedCustomerConnection { edges { ...Row } } "
        "fragment Row on CompanyEdge { node { ... on Company { id parent { id } } } }"
    )
    assert cost(named) == cost(inline) == 1 + 20 * 3


async def test_fragments_spread_many_times_count_every_time_and_are_measured_once(client, owner):
    levels = 40  # each fragment spreads the next twice: 2^40 spreads of the last one
    fragments = " ".join(
        f"fragment F{n} on Query {{ ...F{n + 1} ... on Query {{ ...F{n + 1} }} }}"
        for n in range(levels)
    )
    query = f"query {{ ...F0 }} {fragments} fragment F{levels} on Query {{ a: viewer {{ via }} }}"
    body = await refused_without_running(client, owner, query)
    assert error_codes(body) == ["TOO_MANY_ALIASES", "QUERY_TOO_COSTLY"]
    assert body["errors"][0]["message"].startswith(f"{2**levels} aliases found")
    assert body["errors"][1]["extensions"]["cost"] == 2**levels


async def test_depth_is_measured_through_fragments(client, owner):
    def nested(levels: int) -> str:
        level = "children { edges { node { ...L%d } } }"
        fragments = " ".join(
            f"fragment L{n} on Company {{ {level % (n + 1)} }}" for n in range(levels)
        )
        return f"{{ rootCompanies {{ ...L0 }} }} {fragments} fragment L{levels} on Company {{ id }}"

    body = await refused_without_running(client, owner, nested(4))  # 1 + 4 x 3 fields deep
    assert error_codes(body) == ["QUERY_TOO_DEEP"]
    assert "exceeds maximum operation depth of 12" in body["errors"][0]["message"]
    assert "errors" not in (await post(client, nested(3), owner.token)).json()


async def test_skipped_fields_count_as_if_included(client, owner):
    query = TREE_VIEW.replace("(first: $leaves)", "(first: 100) @skip(if: true)")
    query = query.replace(", $leaves: Int = 5", "")
    body = await refused_without_running(client, owner, query)
    assert error_codes(body) == ["QUERY_TOO_COSTLY"]


async def test_the_introspection_query_graphiql_sends_passes(client, owner):
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    body = (await post(client, query, owner.token)).json()
    assert "errors" not in body
    assert 0 < body["extensions"]["cost"]["requested"] < LIMIT


async def test_introspection_is_counted(client, owner):
    introspection = get_introspection_query(descriptions=True)
    fragments = introspection[introspection.index("fragment FullType") :]
    schemas = " ".join(f"s{n}: __schema {{ types {{ ...FullType }} }}" for n in range(3))
    body = await refused_without_running(client, owner, f"{{ {schemas} }} {fragments}")
    assert error_codes(body) == ["QUERY_TOO_COSTLY"]
    nested = "{ __schema { types { fields { args { type { fields { args { name } } } } } } } }"
    body = await refused_without_running(client, owner, nested)
    assert error_codes(body) == ["QUERY_TOO_COSTLY"]


async def test_a_too_deep_query_is_refused(client, owner):
    nested = "children { edges { node { " * 6 + "id" + " } } }" * 6
    body = await refused_without_running(client, owner, f"{{ rootCompanies {{ {nested} }} }}")
    assert error_codes(body) == ["QUERY_TOO_DEEP"]
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]


async def test_too_many_aliases_are_refused(client, owner):
    aliases = " ".join(f"a{n}: viewer {{ via }}" for n in range(31))
    body = await refused_without_running(client, owner, f"{{ {aliases} }}")
    assert error_codes(body) == ["TOO_MANY_ALIASES"]
    assert body["errors"][0]["message"] == "31 aliases found, at most 30 allowed"
    thirty = " ".join(f"a{n}: viewer {{ via }}" for n in range(30))
    assert "errors" not in (await post(client, f"{{ {thirty} }}", owner.token)).json()


async def test_a_too_long_query_is_refused(client, owner):
    fields = " ".join("__typename" for _ in range(3000))
    body = (await post(client, f"{{ {fields} }}", owner.token)).json()
    assert "data" not in body
    assert "token" in body["errors"][0]["message"].lower()


async def test_page_sizes_of_the_wrong_type_or_out_of_range_are_refused(client, owner):
    query = "query($n: Int) { managedCustomers(first: $n) { totalCount } }"
    for value in ("ten", True, 1.5, [1], {"n": 1}):
        body = (await post(client, query, owner.token, {"n": value})).json()
        assert "data" not in body and body["errors"], body
    body = (await post(client, query, owner.token, {"n": 101})).json()
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_the_cost_of_a_query_is_reported_and_follows_page_sizes(client, owner):
    query = "query($n: Int) { managedCustomers(first: $n) { edges { node { parent { id } } } } }"
    small = (await post(client, query, owner.token, {"n": 10})).json()
    large = (await post(client, query, owner.token, {"n": 100})).json()
    assert small["extensions"]["cost"] == {"requested": 1 + 10 * 3, "limit": LIMIT}
    assert large["extensions"]["cost"] == {"requested": 1 + 100 * 3, "limit": LIMIT}
