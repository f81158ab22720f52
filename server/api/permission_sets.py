"""Permission sets: a level per area on static groups (`permissionSets`, and the mutations that
manage them, granting nothing the manager does not hold)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import strawberry
from strawberry.types import Info

from server.api.context import Context
from server.api.enums import Area, Level
from server.api.groups import StaticGroup
from server.api.mutations import audited, mutation, mutation_input, payload
from server.api.node import Node, decode_id, decode_ids, decode_optional_ids, refetchable
from server.api.pagination import Connection, connection_query
from server.domain import global_ids, permission_sets
from server.domain.access import parse_levels
from server.models import PermissionSet as PermissionSetModel
from server.models.enums import Area as AreaValue
from server.models.enums import Level as LevelValue


@strawberry.type
class PermissionLevel:
    area: Area
    level: Level


@strawberry.input
class PermissionLevelInput:
    area: Area
    level: Level


@strawberry.type
class PermissionSet(Node):
    id: strawberry.ID
    name: str
    description: str
    created_at: dt.datetime
    model: strawberry.Private[PermissionSetModel]

    @classmethod
    def of(cls, model: PermissionSetModel) -> PermissionSet:
        return cls(
            id=strawberry.ID(global_ids.encode("PermissionSet", model.id)),
            name=model.name,
            description=model.description,
            created_at=model.created_at,
            model=model,
        )

    @strawberry.field(description="The level granted per area.")
    def levels(self) -> list[PermissionLevel]:
        granted = parse_levels(self.model.levels)
        return [PermissionLevel(area=a, level=granted[a]) for a in AreaValue if a in granted]

    @strawberry.field(description="The groups (with their subtrees) the levels apply to.")
    async def groups(self, info: Info[Context, None]) -> list[StaticGroup]:
        loaders = info.context.loaders
        ids = await loaders.group_ids_by_permission_set.load(self.model.id) or []
        found = await loaders.group_by_id.load_many(ids)
        return [StaticGroup.of(g) for g in found if g is not None]


refetchable("PermissionSet", lambda loaders: loaders.permission_set_by_id, PermissionSet.of)


@strawberry.type
class PermissionSetQueries:
    permission_sets: Connection[PermissionSet] = connection_query(
        permission_sets.visible,
        PermissionSet.of,
        "Permission sets whose groups all lie within the viewer's USERS scope.",
    )


@mutation_input
class CreatePermissionSetInput:
    name: str
    levels: list[PermissionLevelInput]
    group_ids: list[strawberry.ID]
    description: str | None = None


@payload
class CreatePermissionSetPayload:
    permission_set: PermissionSet | None = None


@mutation_input
class UpdatePermissionSetInput:
    permission_set_id: strawberry.ID
    name: str | None = None
    description: str | None = None
    levels: list[PermissionLevelInput] | None = None
    group_ids: list[strawberry.ID] | None = None


@payload
class UpdatePermissionSetPayload:
    permission_set: PermissionSet | None = None


@mutation_input
class DeletePermissionSetInput:
    permission_set_id: strawberry.ID


@payload
class DeletePermissionSetPayload:
    deleted_permission_set_id: strawberry.ID | None = None


def _levels(values: Sequence[PermissionLevelInput]) -> list[tuple[AreaValue, LevelValue]]:
    return [(AreaValue(v.area), LevelValue(v.level)) for v in values]


@strawberry.type
class PermissionSetMutations:
    @mutation(
        "A permission set on groups the viewer manages, granting nothing the viewer does not hold."
    )
    async def create_permission_set(
        self, info: Info[Context, None], input: CreatePermissionSetInput
    ) -> CreatePermissionSetPayload:
        context = info.context
        group_keys = decode_ids(input.group_ids, "StaticGroup", "groupIds")
        scope = context.require_scope()
        detail = {"name": input.name[:255]}
        async with audited(context, "createPermissionSet", "PermissionSet", None, detail) as entry:
            created = await permission_sets.create_permission_set(
                scope,
                name=input.name,
                description=input.description,
                levels=_levels(input.levels),
                group_ids=group_keys,
            )
            entry.object_id = created.id
            entry.group_path = await permission_sets.filing_path(scope, created)
        return CreatePermissionSetPayload(permission_set=PermissionSet.of(created))

    @mutation("Change a permission set the viewer manages; its holders' rights change.")
    async def update_permission_set(
        self, info: Info[Context, None], input: UpdatePermissionSetInput
    ) -> UpdatePermissionSetPayload:
        context = info.context
        key = decode_id(input.permission_set_id, "PermissionSet", "permissionSetId")
        group_keys = decode_optional_ids(input.group_ids, "StaticGroup", "groupIds")
        scope = context.require_scope()
        async with audited(context, "updatePermissionSet", "PermissionSet", key) as entry:
            updated = await permission_sets.update_permission_set(
                scope,
                key,
                name=input.name,
                description=input.description,
                levels=_levels(input.levels) if input.levels is not None else None,
                group_ids=group_keys,
            )
            entry.group_path = await permission_sets.filing_path(scope, updated)
        return UpdatePermissionSetPayload(permission_set=PermissionSet.of(updated))

    @mutation("Delete a permission set the viewer manages; its holders lose its rights.")
    async def delete_permission_set(
        self, info: Info[Context, None], input: DeletePermissionSetInput
    ) -> DeletePermissionSetPayload:
        context = info.context
        key = decode_id(input.permission_set_id, "PermissionSet", "permissionSetId")
        scope = context.require_scope()
        async with audited(context, "deletePermissionSet", "PermissionSet", key) as entry:
            target = await permission_sets.get_visible(scope, key)
            entry.group_path = await permission_sets.filing_path(scope, target)
            entry.detail["name"] = target.name
            await permission_sets.delete_permission_set(scope, key)
        return DeletePermissionSetPayload(deleted_permission_set_id=input.permission_set_id)
