"""The schema, assembled from one module per domain."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from server.api.accounts import Account, AccountMutations
from server.api.audit import AuditEntry, AuditQueries
from server.api.authentication import SignIn
from server.api.companies import Company, CompanyQueries
from server.api.computers import Computer, ComputerMutations, ComputerQueries
from server.api.customers import CustomerMutations, CustomerQueries
from server.api.errors import ErrorPolicy, WebsocketRequired
from server.api.execution import Executor, install_shortcuts
from server.api.groups import GroupQueries, StaticGroup
from server.api.installers import Installer, InstallerMutations
from server.api.instances import Instance, InstanceMutations, InstanceQueries
from server.api.licenses import License, LicenseQueries
from server.api.limits import QueryLimits
from server.api.node import NodeQueries
from server.api.permission_sets import (
    PermissionSet,
    PermissionSetMutations,
    PermissionSetQueries,
)
from server.api.subscriptions import Subscription
from server.api.sync import SyncMutations, SyncQueries, SyncRun
from server.api.usage import UsageQueries
from server.api.users import User, UserMutations, UserQueries
from server.api.viewer import ViewerQueries
from server.observability import OperationMetrics
from server.settings import Settings


@strawberry.type
class Query(
    NodeQueries,
    ViewerQueries,
    InstanceQueries,
    CompanyQueries,
    CustomerQueries,
    GroupQueries,
    ComputerQueries,
    SyncQueries,
    UserQueries,
    PermissionSetQueries,
    AuditQueries,
    LicenseQueries,
    UsageQueries,
):
    pass


@strawberry.type
class Mutation(
    AccountMutations,
    InstanceMutations,
    CustomerMutations,
    UserMutations,
    PermissionSetMutations,
    SyncMutations,
    InstallerMutations,
    ComputerMutations,
):
    pass


class ConsoleSchema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Logged by ErrorPolicy instead: unexpected errors only, with the request id."""

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Queries and mutations, the operations that answer once (what HTTP carries). A
        subscription answers a stream, which only a websocket serves (Strawberry runs those
        through `stream`): sent here, it is refused as a request error before anything runs."""
        allowed = set(allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES)
        try:
            return await super().execute(
                query,
                variable_values,
                context_value,
                root_value,
                operation_name,
                allowed - {OperationType.SUBSCRIPTION},
                operation_extensions,
            )
        except InvalidOperationTypeError as exc:
            if exc.operation_type is not OperationType.SUBSCRIPTION:
                raise
            refusal = WebsocketRequired(
                "subscriptions are served over a websocket (graphql-transport-ws), not over HTTP"
            )
            return ExecutionResult(data=None, errors=[refusal])


def build_schema(settings: Settings | None = None) -> ConsoleSchema:
    """The schema with the query limits of `settings` (the defaults when None). With
    `execution_shortcuts` off, Strawberry and graphql-core execute everything themselves: the
    way out should an upgrade break them, and what `python -m tests.bench.execution_shortcuts`
    measures them against."""
    settings = settings or Settings()
    extensions: list[Any] = [
        OperationMetrics,
        ErrorPolicy,
        lambda: MaxTokensLimiter(settings.max_query_tokens),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        lambda: QueryLimits(  # after ValidationCache: see QueryLimits
            settings.max_query_depth, settings.max_aliases, settings.max_query_cost
        ),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    extensions.append(SignIn)  # last: only an operation that passed every limit signs in
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
            License,
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


def __getattr__(name: str) -> Any:
    """`server.api.schema:schema`: the schema as the environment configures it, built on first
    use, so importing this module builds nothing and the shortcuts' off switch always works."""
    if name == "schema":
        built = globals()["schema"] = build_schema(Settings.from_env())
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
