"""Installers as the API shows them (the token is never readable: it is shown once, by the
mutation that creates the installer)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.context import Context
from server.api.node import Node, resolves
from server.domain import global_ids
from server.domain.installers import agent_endpoint
from server.models import Company as CompanyModel
from server.models import Installer as InstallerModel
from server.models import StaticGroup as GroupModel
from server.models.enums import Area, Level

if TYPE_CHECKING:
    from server.api.companies import Company
    from server.api.groups import StaticGroup


@strawberry.type
class Installer(Node):
    id: strawberry.ID
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked: bool
    model: strawberry.Private[InstallerModel]

    @classmethod
    def of(cls, model: InstallerModel) -> Installer:
        return cls(
            id=strawberry.ID(global_ids.encode("Installer", model.id)),
            name=model.name,
            created_at=model.created_at,
            expires_at=model.expires_at,
            revoked=model.revoked_at is not None,
            model=model,
        )

    @strawberry.field(description="The public URL agents will call.")
    def agent_endpoint(self, info: Info[Context, None]) -> str:
        return agent_endpoint(info.context.settings)

    @strawberry.field
    async def company(
        self, info: Info[Context, None]
    ) -> Annotated[Company, strawberry.lazy("server.api.companies")]:
        from server.api.companies import Company

        company_id = self.model.company_id  # type: ignore[attr-defined]
        found = await info.context.loaders.company_by_id.load(company_id)
        # Whoever sees the installer may know whose it is, even above its own scope.
        return Company.of(found or await CompanyModel.get(id=company_id))

    @strawberry.field
    async def group(
        self, info: Info[Context, None]
    ) -> Annotated[StaticGroup, strawberry.lazy("server.api.groups")]:
        from server.api.groups import StaticGroup

        group_id = self.model.group_id  # type: ignore[attr-defined]
        found = await info.context.loaders.group_by_id.load(group_id)
        return StaticGroup.of(found or await GroupModel.get(id=group_id))


@resolves("Installer")
async def installer_node(info: Info[Context, None], key: int) -> Installer | None:
    scope = info.context.require_scope()
    found = await InstallerModel.get_or_none(
        id=key, instance_id=scope.instance_id
    ).prefetch_related("group")
    if found is None or not scope.allows(found.group.path, Area.INSTALLERS, Level.READ):
        return None
    return Installer.of(found)
