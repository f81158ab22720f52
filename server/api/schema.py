"""The schema, assembled from one module per domain."""

from __future__ import annotations

import strawberry
from strawberry.extensions import ParserCache, ValidationCache

from server.api.accounts import (
    Account,
    AccountMutations,
    AccountQueries,
    Instance,
    User,
)
from server.api.companies import Company, CompanyQueries
from server.api.computers import Computer, ComputerQueries
from server.api.errors import ErrorPolicy
from server.api.groups import GroupQueries, StaticGroup
from server.api.node import NodeQueries
from server.api.subscriptions import Subscription
from server.api.sync import SyncQueries, SyncRun


@strawberry.type
class Query(
    NodeQueries, AccountQueries, CompanyQueries, GroupQueries, ComputerQueries, SyncQueries
):
    pass


@strawberry.type
class Mutation(AccountMutations):
    pass


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Account, Company, Computer, Instance, StaticGroup, SyncRun, User],
        extensions=[
            ErrorPolicy,
            lambda: ParserCache(maxsize=256),
            lambda: ValidationCache(maxsize=256),
        ],
    )


schema = build_schema()
