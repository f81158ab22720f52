"""Computers, their connection status, and removing them (among them the duplicates that
enrolments without the agent's token make)."""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.types import Info

from server.api.authentication import query
from server.api.context import Context
from server.api.enums import Area, ConnectionStatus, DuplicateResolution, ProtectionStatus
from server.api.execution import direct
from server.api.mutations import audited, mutation, mutation_input, payload
from server.api.node import Node, decode_id, refetchable
from server.api.pagination import Connection, distinct, page_request, paginate
from server.domain import agents, computers, global_ids
from server.domain.connections import connection_status
from server.models import Computer as ComputerModel
from server.models import StaticGroup as GroupModel

if TYPE_CHECKING:
    from server.api.companies import Company
    from server.api.groups import StaticGroup
    from server.api.loaders import Loaders


@strawberry.type
class Computer(Node):
    id: strawberry.ID
    name: str
    os: str | None
    agent_version: str | None
    hardware_id: str
    protection_status: ProtectionStatus | None
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
    def connection_status(self, info: Info[Context, None]) -> ConnectionStatus:
        return connection_status(
            self.model.last_connected_at, dt.datetime.now(dt.UTC), info.context.settings
        )

    @strawberry.field
    async def group(
        self, info: Info[Context, None]
    ) -> Annotated[StaticGroup, strawberry.lazy("server.api.groups")]:
        from server.api.groups import StaticGroup

        group = await info.context.loaders.group_by_id.load(self.model.group_id)
        if group is None:
            raise RuntimeError(f"computer {self.model.id} has no visible group")
        return StaticGroup.of(group)

    @strawberry.field
    async def company(
        self, info: Info[Context, None]
    ) -> Annotated[Company, strawberry.lazy("server.api.companies")] | None:
        from server.api.companies import Company

        company_id = self.model.company_id
        found = await info.context.loaders.company_by_id.load(company_id) if company_id else None
        return Company.of(found) if found else None

    @strawberry.field(
        description="The enrolled computer whose hardware id this one claimed without its "
        "agent token (settle it with resolveDuplicateComputer); null when it is none's "
        "duplicate, or that computer is out of sight."
    )
    async def duplicate_of(self, info: Info[Context, None]) -> Computer | None:
        key = self.model.duplicate_of_id
        found = await info.context.loaders.computer_by_id.load(key) if key else None
        return Computer.of(found) if found else None


async def computers_in_group(
    info: Info[Context, None],
    group: GroupModel | None,
    first: int | None,
    after: str | None,
    recursive: bool,
    status: list[ConnectionStatus] | None,
    search: str | None,
    last: int | None = None,
    before: str | None = None,
    duplicates: bool | None = None,
) -> Connection[Computer]:
    request = page_request(first, after, last, before)
    context = info.context
    scope = context.require_scope()
    listing = computers.visible(scope)
    if group is not None:
        await computers.in_group(listing, group, recursive)
    statuses = distinct(status)
    await computers.narrow(
        listing, scope.instance_id, context.settings, statuses, search, duplicates=duplicates
    )
    filtered = computers.narrows(status, search, duplicates)
    return await paginate(
        listing,
        request,
        Computer.of,
        prime=context.loaders.prime_computers,
        count=lambda: computers.count(scope, listing, group, recursive, filtered),
    )


def computers_field(
    group_of: Callable[[Any, Loaders], GroupModel | Awaitable[GroupModel | None]],
) -> Any:
    """The `computers` field of what stands for a group: a group itself, or a company (its
    own group). Declared without annotation, it keeps its place among the type's fields."""

    async def computers(
        root: Any,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        recursive: bool = True,
        status: list[ConnectionStatus] | None = None,
        search: str | None = None,
    ) -> Connection[Computer]:
        found = group_of(root, info.context.loaders)
        group = await found if inspect.isawaitable(found) else found
        if group is None:  # a group out of the viewer's sight holds nothing it may list
            return await computers_in_group(info, None, 0, None, recursive, [], None)
        return await computers_in_group(info, group, first, after, recursive, status, search)

    return strawberry.field(resolver=computers)


refetchable("Computer", lambda loaders: loaders.computer_by_id, Computer.of)


@strawberry.type
class ComputerQueries:
    @query("Computers the viewer may see, in a group (and its subgroups) or everywhere.")
    async def computers(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        group: strawberry.ID | None = None,
        recursive: bool = True,
        status: list[ConnectionStatus] | None = None,
        search: str | None = None,
        last: int | None = None,
        before: str | None = None,
        duplicates: Annotated[
            bool | None,
            strawberry.argument(
                description="true: only duplicates waiting to be settled; false: none of them."
            ),
        ] = None,
    ) -> Connection[Computer]:
        model = None
        if group is not None:
            model = await info.context.loaders.group_by_id.load(
                decode_id(group, "StaticGroup", "group")
            )
            if model is None:  # out of scope or missing: an empty list, like a filter
                return await computers_in_group(info, None, 0, None, recursive, [], None)
        return await computers_in_group(
            info, model, first, after, recursive, status, search, last, before, duplicates
        )


@mutation_input
class RemoveComputerInput:
    computer_id: strawberry.ID


@payload
class RemoveComputerPayload:
    removed_computer_id: strawberry.ID | None = None


@mutation_input
class ResolveDuplicateComputerInput:
    computer_id: strawberry.ID = strawberry.field(description="The duplicate.")
    keep: DuplicateResolution


@payload
class ResolveDuplicateComputerPayload:
    computer: Computer | None = strawberry.field(
        default=None, description="The computer kept (null if it is out of the viewer's sight)."
    )


@strawberry.type
class ComputerMutations:
    @mutation(
        "Remove a computer (COMPUTERS WRITE on its group); its agent token stops working at "
        "once. One with duplicates waits until they are settled."
    )
    async def remove_computer(
        self, info: Info[Context, None], input: RemoveComputerInput
    ) -> RemoveComputerPayload:
        context = info.context
        key = decode_id(input.computer_id, "Computer", "computerId")
        async with audited(context, "removeComputer", "Computer", key) as entry:
            removal = await computers.remove_computer(context.require_scope(), key)
            entry.group_path = removal.removed[0].group_path
            entry.detail["name"] = removal.removed[0].computer.name
        await _revoke_tokens(context, removal)
        return RemoveComputerPayload(removed_computer_id=input.computer_id)

    @mutation(
        "Settle a duplicate (COMPUTERS WRITE on its group, and on the enrolled computer's to "
        "keep the new one): KEEP_NEW removes the enrolled computer and the duplicate takes its "
        "place; KEEP_EXISTING removes the duplicate. The removed computer's agent token stops "
        "working at once."
    )
    async def resolve_duplicate_computer(
        self, info: Info[Context, None], input: ResolveDuplicateComputerInput
    ) -> ResolveDuplicateComputerPayload:
        context = info.context
        key = decode_id(input.computer_id, "Computer", "computerId")
        scope = context.require_scope()
        detail = {"keep": input.keep.value}
        async with audited(context, "resolveDuplicateComputer", "Computer", key, detail) as entry:
            removal = await computers.resolve_duplicate(scope, key, input.keep)
            removed = removal.removed[0]
            entry.group_path = removed.group_path
            entry.detail["removedComputerId"] = global_ids.encode("Computer", removed.computer.id)
        await _revoke_tokens(context, removal)
        kept = removal.kept
        visible = kept is not None and scope.allows(kept.group_path, Area.COMPUTERS)
        return ResolveDuplicateComputerPayload(
            computer=Computer.of(kept.computer) if kept is not None and visible else None
        )


async def _revoke_tokens(context: Context, removal: computers.Removal) -> None:
    """After commit: every agent runtime refuses the removed computers' tokens from now on."""
    await agents.publish_revoked_tokens(
        context.bus, context.require_scope().instance_id, removal.dead_token_hashes
    )
