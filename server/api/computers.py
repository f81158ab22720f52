"""Computers and their connection status."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.context import Context
from server.api.enums import ConnectionStatus, ProtectionStatus
from server.api.execution import direct
from server.api.node import Node, decode_id, resolves
from server.api.pagination import (
    CountedConnection,
    PageInfo,
    distinct,
    page_request,
    paginate,
)
from server.api.permissions import Authenticated
from server.domain import computers, global_ids
from server.domain.connections import connection_status
from server.models import Computer as ComputerModel
from server.models import StaticGroup as GroupModel

if TYPE_CHECKING:
    from server.api.companies import Company
    from server.api.groups import StaticGroup


@strawberry.type
class Computer(Node):
    id: strawberry.ID
    name: str
    os: str | None
    agent_version: str | None
    hardware_id: str
    protection_status: ProtectionStatus | None  # type: ignore[valid-type]
    enrolled_at: dt.datetime
    last_connected_at: dt.datetime | None
    model: strawberry.Private[ComputerModel]

    @classmethod
    def of(cls, model: ComputerModel) -> Computer:
        return cls(
            id=strawberry.ID(global_ids.encode("Computer", model.id)),
            name=model.name,
            os=model.os,
            agent_version=model.agent_version,
            hardware_id=model.hardware_id,
            protection_status=model.protection_status,
            enrolled_at=model.enrolled_at,
            last_connected_at=model.last_connected_at,
            model=model,
        )

    @strawberry.field
    @direct
    def connection_status(self, info: Info[Context, None]) -> ConnectionStatus:  # type: ignore[valid-type]
        return connection_status(
            self.model.last_connected_at, dt.datetime.now(dt.UTC), info.context.settings
        )

    @strawberry.field
    async def group(
        self, info: Info[Context, None]
    ) -> Annotated[StaticGroup, strawberry.lazy("server.api.groups")]:
        from server.api.groups import StaticGroup

        group = await info.context.loaders.group_by_id.load(self.model.group_id)  # type: ignore[attr-defined]
        if group is None:
            raise RuntimeError(f"computer {self.model.id} has no visible group")
        return StaticGroup.of(group)

    @strawberry.field
    async def company(
        self, info: Info[Context, None]
    ) -> Annotated[Company, strawberry.lazy("server.api.companies")] | None:
        from server.api.companies import Company

        company_id = self.model.company_id  # type: ignore[attr-defined]
        found = await info.context.loaders.company_by_id.load(company_id) if company_id else None
        return Company.of(found) if found else None


@strawberry.type
class ComputerEdge:
    cursor: str
    node: Computer


@strawberry.type
class ComputerConnection(CountedConnection):
    edges: list[ComputerEdge]
    page_info: PageInfo


async def computers_in_group(
    info: Info[Context, None],
    group: GroupModel | None,
    first: int | None,
    after: str | None,
    recursive: bool,
    status: list[ConnectionStatus] | None,  # type: ignore[valid-type]
    search: str | None,
    last: int | None = None,
    before: str | None = None,
) -> ComputerConnection:
    request = page_request(first, after, last, before)
    context = info.context
    listing = computers.visible(context.require_scope())
    if group is not None:
        computers.in_group(listing, group, recursive)
    computers.narrow(listing, context.settings, distinct(status), search)
    return await paginate(
        ComputerConnection,
        ComputerEdge,
        Computer.of,
        listing,
        request,
        prime=context.loaders.prime_computers,
    )


@resolves("Computer")
async def computer_node(info: Info[Context, None], key: int) -> Computer | None:
    found = await info.context.loaders.computer_by_id.load(key)
    return Computer.of(found) if found else None


@strawberry.type
class ComputerQueries:
    @strawberry.field(
        permission_classes=[Authenticated],
        description="Computers the viewer may see, in a group (and its subgroups) or everywhere.",
    )
    async def computers(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        group: strawberry.ID | None = None,
        recursive: bool = True,
        status: list[ConnectionStatus] | None = None,  # type: ignore[valid-type]
        search: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> ComputerConnection:
        model = None
        if group is not None:
            model = await info.context.loaders.group_by_id.load(
                decode_id(group, "StaticGroup", "group")
            )
            if model is None:  # out of scope or missing: an empty list, like a filter
                return await computers_in_group(info, None, 0, None, recursive, [], None)
        return await computers_in_group(
            info, model, first, after, recursive, status, search, last, before
        )
