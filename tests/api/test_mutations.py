"""What every mutation shares (server/api/mutations.py): a domain error answers the payload's
`errors` after the change rolled back, `clientMutationId` comes back whatever happened, and ids
are decoded before anything runs."""

from __future__ import annotations

from strawberry.schema.schema_converter import GraphQLCoreConverter

from graphql import GraphQLNonNull, get_named_type
from server.api.mutations import PayloadErrors
from server.api.schema import build_schema
from server.domain import global_ids
from server.models import PermissionSet
from tests import factories
from tests.graphql_client import GraphQLClient

SKIP = """mutation($input: SkipCustomerSetupInput!) { skipCustomerSetup(input: $input) {
  customer { id customerStatus } errors { code field } clientMutationId } }"""


def test_every_mutation_is_declared_with_the_shared_field_and_payload():
    mutations = build_schema()._schema.mutation_type
    assert mutations is not None
    for name, field in mutations.fields.items():
        definition = field.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
        assert any(isinstance(e, PayloadErrors) for e in definition.extensions), name
        payload = get_named_type(field.type)
        assert payload.name == f"{name[0].upper()}{name[1:]}Payload"
        # clients see each payload's own fields first, then these two
        assert list(payload.fields)[-2:] == ["errors", "clientMutationId"], name
        assert str(payload.fields["errors"].type) == "[UserError!]!"
        assert not isinstance(payload.fields["clientMutationId"].type, GraphQLNonNull)


async def test_success_and_failure_both_echo_the_client_mutation_id(client: GraphQLClient):
    owner = await factories.owner(client)
    tree = await factories.company_tree(owner.instance_id, msps=1, customers_per_msp=1)
    customer_id = global_ids.encode("Company", tree.all_customers[0].id)
    answers = []
    for client_mutation_id in ("first", "second"):
        variables = {"input": {"customerId": customer_id, "clientMutationId": client_mutation_id}}
        answers.append((await client.query(SKIP, variables, owner.token))["skipCustomerSetup"])
    assert answers == [
        {
            "customer": {"id": customer_id, "customerStatus": "NORMAL"},
            "errors": [],
            "clientMutationId": "first",
        },
        {
            "customer": None,
            "errors": [{"code": "INVALID_TRANSITION", "field": None}],
            "clientMutationId": "second",
        },
    ]


async def test_more_than_a_hundred_ids_in_one_argument_are_refused_before_anything_runs(
    client: GraphQLClient,
):
    owner = await factories.owner(client)
    many = [global_ids.encode("StaticGroup", i) for i in range(1, 102)]
    malformed = [global_ids.encode("StaticGroup", 1), "not an id"]
    create = """mutation($input: CreatePermissionSetInput!) { createPermissionSet(input: $input) {
      permissionSet { id } errors { code } } }"""
    levels = [{"area": "COMPUTERS", "level": "READ"}]
    for ids in (many, malformed):
        body = await client.execute(
            create,
            {"input": {"name": "Too many", "levels": levels, "groupIds": ids}},
            owner.token,
        )
        assert body["data"] is None
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "groupIds"}
    assert not await PermissionSet.filter(instance_id=owner.instance_id, name="Too many")
