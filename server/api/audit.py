"""The audit log as the API shows it: `auditLog` (AUDIT area), newest first."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from server.api.context import Context
from server.api.node import Node, refetchable
from server.api.pagination import Connection, connection_query
from server.domain import audit, global_ids
from server.models import AuditEntry as AuditEntryModel

if TYPE_CHECKING:
    from server.api.users import User


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
            detail=JSON(model.detail or {}),
            created_at=model.created_at,
            model=model,
        )

    @strawberry.field(description="The acting user, if the viewer may see it.")
    async def actor(
        self, info: Info[Context, None]
    ) -> Annotated[User, strawberry.lazy("server.api.users")] | None:
        from server.api.users import User

        actor_id = self.model.actor_id
        found = await info.context.loaders.user_by_id.load(actor_id) if actor_id else None
        return User.of(found) if found else None


refetchable("AuditEntry", lambda loaders: loaders.audit_entry_by_id, AuditEntry.of)


@strawberry.type
class AuditQueries:
    audit_log: Connection[AuditEntry] = connection_query(
        audit.visible,
        AuditEntry.of,
        "What happened within the viewer's groups (READ on AUDIT), newest first.",
        key_length=1,
    )
