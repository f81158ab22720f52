"""The audit log as the API shows it (`auditLog`, AUDIT area), and `audited`, the wrapper every
mutation runs its change in so that the change and its entry commit together."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from server.api.context import Context
from server.api.node import Node, resolves
from server.api.pagination import CountedConnection, PageInfo, page_request, paginate
from server.api.permissions import Authenticated
from server.domain import audit, global_ids
from server.models import AuditEntry as AuditEntryModel

if TYPE_CHECKING:
    from server.api.accounts import User


@contextlib.asynccontextmanager
async def audited(
    context: Context,
    action: str,
    object_type: str = "",
    object_id: int | str | None = None,
    detail: dict[str, Any] | None = None,
) -> AsyncIterator[audit.Pending]:
    """Run a mutation's change in one transaction ending with its audit entry; a failure is
    recorded after the rollback, filed under the actor's home group unless the change named
    the object's group."""
    session = context.require_session()
    async with audit.recorded(
        context.scope,
        session.user_id,
        action,
        object_type,
        object_id,
        failure_group_path=session.home_group_path or "",
        detail=detail,
    ) as entry:
        yield entry


@strawberry.type
class AuditEntry(Node):
    id: strawberry.ID
    action: str = strawberry.field(description="The mutation, e.g. setupCustomer.")
    object_type: str
    object_id: str | None = strawberry.field(description="The global id of the object acted on.")
    actor_email: str
    outcome: str = strawberry.field(description="SUCCESS, or the error code of the failure.")
    detail: JSON
    created_at: dt.datetime
    model: strawberry.Private[AuditEntryModel]

    @classmethod
    def of(cls, model: AuditEntryModel) -> AuditEntry:
        return cls(
            id=strawberry.ID(global_ids.encode("AuditEntry", model.id)),
            action=model.action,
            object_type=model.object_type,
            object_id=model.object_id or None,
            actor_email=model.actor_email,
            outcome=model.outcome,
            detail=model.detail or {},
            created_at=model.created_at,
            model=model,
        )

    @strawberry.field(description="The acting user, if the viewer may see it.")
    async def actor(
        self, info: Info[Context, None]
    ) -> Annotated[User, strawberry.lazy("server.api.accounts")] | None:
        from server.api.accounts import user_node

        actor_id = self.model.actor_id  # type: ignore[attr-defined]
        return await user_node(info, actor_id) if actor_id is not None else None


@strawberry.type
class AuditEntryEdge:
    cursor: str
    node: AuditEntry


@strawberry.type
class AuditEntryConnection(CountedConnection):
    edges: list[AuditEntryEdge]
    page_info: PageInfo


@resolves("AuditEntry")
async def audit_entry_node(info: Info[Context, None], key: int) -> AuditEntry | None:
    found = (await audit.by_ids(info.context.require_scope(), [key])).get(key)
    return AuditEntry.of(found) if found else None


@strawberry.type
class AuditQueries:
    @strawberry.field(
        permission_classes=[Authenticated],
        description="What happened within the viewer's groups (READ on AUDIT), newest first.",
    )
    async def audit_log(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> AuditEntryConnection:
        request = page_request(first, after, last, before, key_length=1)
        listing = audit.visible(info.context.require_scope())
        return await paginate(
            AuditEntryConnection,
            AuditEntryEdge,
            AuditEntry.of,
            listing,
            request,
        )
