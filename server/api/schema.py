"""The schema, assembled from one module per domain."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import IgnoreContext
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from server.api.accounts import (
    Account,
    AccountMutations,
    AccountQueries,
    Instance,
    User,
)
from server.api.audit import AuditEntry, AuditQueries
from server.api.companies import Company, CompanyQueries
from server.api.computers import Computer, ComputerQueries
from server.api.customers import CustomerMutations
from server.api.errors import ErrorPolicy
from server.api.execution import Executor, install_shortcuts
from server.api.groups import GroupQueries, StaticGroup
from server.api.installers import Installer, InstallerMutations
from server.api.limits import CostLimit
from server.api.node import NodeQueries
from server.api.subscriptions import Subscription
from server.api.sync import SyncMutations, SyncQueries, SyncRun
from server.api.users import PermissionSet, UserMutations, UserQueries
from server.observability import OperationMetrics
from server.settings import Settings


@strawberry.type
class Query(
    NodeQueries,
    AccountQueries,
    CompanyQueries,
    GroupQueries,
    ComputerQueries,
    SyncQueries,
    UserQueries,
    AuditQueries,
):
    pass


@strawberry.type
class Mutation(
    AccountMutations, CustomerMutations, UserMutations, SyncMutations, InstallerMutations
):
    pass


class ConsoleSchema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Logged by ErrorPolicy instead: unexpected errors only, with the request id."""


def build_schema(settings: Settings | None = None) -> ConsoleSchema:
    """The schema with the query limits of `settings` (the defaults when None). With
    `execution_shortcuts` off, Strawberry and graphql-core execute everything themselves: the
    way out should an upgrade break them, and what `python -m tests.bench.execution_shortcuts`
    measures them against."""
    settings = settings or Settings()
    # Rule classes built once, so cached validation results stay valid across requests.
    rules = [
        depth_rule(settings.max_query_depth, _introspection, None),
        alias_rule(settings.max_aliases),
    ]
    extensions: list[Any] = [
        OperationMetrics,
        ErrorPolicy,
        lambda: MaxTokensLimiter(settings.max_query_tokens),
        lambda: ParserCache(maxsize=256),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=256),
        lambda: CostLimit(settings.max_query_cost),  # after ValidationCache: see CostLimit
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    built = ConsoleSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[
            Account,
            AuditEntry,
            Company,
            Computer,
            Installer,
            Instance,
            PermissionSet,
            StaticGroup,
            SyncRun,
            User,
        ],
        extensions=extensions,
        execution_context_class=Executor if settings.execution_shortcuts else None,
    )
    if settings.execution_shortcuts:
        install_shortcuts(built._schema)
    return built


def _introspection(context: IgnoreContext) -> bool:
    return context.field_name.startswith("__")
