"""Console users and permission sets: who may do what where (`users`, `permissionSets`, and
the mutations that manage them, each within the manager's own rights)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import strawberry
from strawberry.types import Info

from server.api.accounts import User
from server.api.audit import audited
from server.api.context import Context
from server.api.enums import Area, Level
from server.api.errors import UserError
from server.api.groups import StaticGroup
from server.api.node import Node, decode_id, resolves
from server.api.pagination import CountedConnection, PageInfo, page_request, paginate
from server.api.permissions import Authenticated
from server.domain import global_ids, permissions, users
from server.domain.access import parse_levels
from server.domain.accounts import publish_sessions_ended
from server.domain.errors import DomainError
from server.domain.tree import path_ids
from server.models import PermissionSet as PermissionSetModel
from server.models import StaticGroup as GroupModel
from server.models.enums import Area as AreaValue
from server.models.enums import Level as LevelValue


@strawberry.type
class PermissionLevel:
    area: Area  # type: ignore[valid-type]
    level: Level  # type: ignore[valid-type]


@strawberry.input
class PermissionLevelInput:
    area: Area  # type: ignore[valid-type]
    level: Level  # type: ignore[valid-type]


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


@strawberry.type
class PermissionSetEdge:
    cursor: str
    node: PermissionSet


@strawberry.type
class PermissionSetConnection(CountedConnection):
    edges: list[PermissionSetEdge]
    page_info: PageInfo


@strawberry.type
class UserEdge:
    cursor: str
    node: User


@strawberry.type
class UserConnection(CountedConnection):
    edges: list[UserEdge]
    page_info: PageInfo


@resolves("PermissionSet")
async def permission_set_node(info: Info[Context, None], key: int) -> PermissionSet | None:
    found = (await permissions.by_ids(info.context.require_scope(), [key])).get(key)
    return PermissionSet.of(found) if found else None


@strawberry.type
class UserQueries:
    @strawberry.field(
        permission_classes=[Authenticated],
        description="Console users living within the viewer's USERS scope, by email.",
    )
    async def users(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        search: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> UserConnection:
        request = page_request(first, after, last, before)
        listing = users.visible(info.context.require_scope(), search)
        return await paginate(
            UserConnection,
            UserEdge,
            User.of,
            listing,
            request,
        )

    @strawberry.field(
        permission_classes=[Authenticated],
        description="Permission sets whose groups all lie within the viewer's USERS scope.",
    )
    async def permission_sets(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> PermissionSetConnection:
        request = page_request(first, after, last, before)
        listing = permissions.visible(info.context.require_scope())
        return await paginate(
            PermissionSetConnection,
            PermissionSetEdge,
            PermissionSet.of,
            listing,
            request,
        )


# Mutations -------------------------------------------------------------------------------


@strawberry.input
class CreateUserInput:
    email: str
    password: str
    home_group_id: strawberry.ID
    permission_set_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    description: str | None = None
    tag: str | None = None
    session_timeout: int | None = strawberry.field(
        default=None, description="Seconds of idleness that end a session; null: the default."
    )
    client_mutation_id: str | None = None


@strawberry.type
class CreateUserPayload:
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


@strawberry.input
class UpdateUserInput:
    user_id: strawberry.ID
    enabled: bool | None = strawberry.field(
        default=None, description="false disables the user and ends its sessions at once."
    )
    password: str | None = None
    description: str | None = None
    tag: str | None = None
    session_timeout: int | None = strawberry.field(
        default=strawberry.UNSET, description="Seconds; null sets it back to the default."
    )
    home_group_id: strawberry.ID | None = None
    client_mutation_id: str | None = None


@strawberry.type
class UpdateUserPayload:
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


@strawberry.input
class CreatePermissionSetInput:
    name: str
    levels: list[PermissionLevelInput]
    group_ids: list[strawberry.ID]
    description: str | None = None
    client_mutation_id: str | None = None


@strawberry.type
class CreatePermissionSetPayload:
    permission_set: PermissionSet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


@strawberry.input
class UpdatePermissionSetInput:
    permission_set_id: strawberry.ID
    name: str | None = None
    description: str | None = None
    levels: list[PermissionLevelInput] | None = None
    group_ids: list[strawberry.ID] | None = None
    client_mutation_id: str | None = None


@strawberry.type
class UpdatePermissionSetPayload:
    permission_set: PermissionSet | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


@strawberry.input
class DeletePermissionSetInput:
    permission_set_id: strawberry.ID
    client_mutation_id: str | None = None


@strawberry.type
class DeletePermissionSetPayload:
    deleted_permission_set_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


@strawberry.input
class AssignPermissionSetsInput:
    user_id: strawberry.ID
    permission_set_ids: list[strawberry.ID] = strawberry.field(
        description="The user's sets from now on (sets the viewer cannot see are kept)."
    )
    client_mutation_id: str | None = None


@strawberry.type
class AssignPermissionSetsPayload:
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


MAX_IDS = 100


def _keys(values: Sequence[str], type_name: str, field: str) -> list[int]:
    if len(values) > MAX_IDS:
        from server.api.errors import BadUserInput

        raise BadUserInput(f"at most {MAX_IDS} ids", field=field)
    return [decode_id(value, type_name, field) for value in values]


def _levels(values: Sequence[PermissionLevelInput]) -> list[tuple[AreaValue, LevelValue]]:
    return [(AreaValue(v.area), LevelValue(v.level)) for v in values]


async def _group_path_of_set(permission_set: PermissionSetModel) -> str:
    """Where a set is filed in the audit log: the deepest group above all of its groups."""
    ids = (await permissions.group_ids_by_set([permission_set.id]))[permission_set.id]
    paths = [g.path for g in await GroupModel.filter(id__in=ids)] if ids else []
    if not paths:
        return ""
    common = path_ids(paths[0])
    for path in paths[1:]:
        other = path_ids(path)
        n = 0
        while n < min(len(common), len(other)) and common[n] == other[n]:
            n += 1
        common = common[:n]
    return "/" + "".join(f"{i}/" for i in common) if common else ""


async def _home_path(user_id: int) -> str:
    return (await GroupModel.get(home_users__id=user_id)).path


@strawberry.type
class UserMutations:
    @strawberry.mutation(
        permission_classes=[Authenticated],
        description="A native console user in a group the viewer manages (WRITE on USERS), "
        "with permission sets granting nothing the viewer does not hold.",
    )
    async def create_user(
        self, info: Info[Context, None], input: CreateUserInput
    ) -> CreateUserPayload:
        context = info.context
        group_key = decode_id(input.home_group_id, "StaticGroup", "homeGroupId")
        set_keys = _keys(input.permission_set_ids, "PermissionSet", "permissionSetIds")
        detail = {"email": input.email[:254]}
        try:
            async with audited(context, "createUser", "User", None, detail) as entry:
                user = await users.create_user(
                    context.require_scope(),
                    context.require_session().user_id,
                    email=input.email,
                    password=input.password,
                    home_group_id=group_key,
                    permission_set_ids=set_keys,
                    description=input.description,
                    tag=input.tag,
                    session_timeout_seconds=input.session_timeout,
                )
                entry.object_id = user.id
                entry.group_path = await _home_path(user.id)
        except DomainError as exc:
            return CreateUserPayload(
                errors=[UserError.of(exc)], client_mutation_id=input.client_mutation_id
            )
        return CreateUserPayload(user=User.of(user), client_mutation_id=input.client_mutation_id)

    @strawberry.mutation(
        permission_classes=[Authenticated],
        description="Enable or disable a user (disabling ends its sessions at once) or change "
        "its details.",
    )
    async def update_user(
        self, info: Info[Context, None], input: UpdateUserInput
    ) -> UpdateUserPayload:
        context = info.context
        key = decode_id(input.user_id, "User", "userId")
        group_key = (
            decode_id(input.home_group_id, "StaticGroup", "homeGroupId")
            if input.home_group_id is not None
            else None
        )
        timeout_given = input.session_timeout is not strawberry.UNSET
        detail = {
            "enabled": input.enabled,
            "passwordChanged": input.password is not None,
            "homeGroupChanged": group_key is not None,
        }
        try:
            async with audited(context, "updateUser", "User", key, detail) as entry:
                change = await users.update_user(
                    context.require_scope(),
                    context.require_session().user_id,
                    key,
                    enabled=input.enabled,
                    password=input.password,
                    description=input.description,
                    tag=input.tag,
                    session_timeout_seconds=input.session_timeout if timeout_given else None,  # type: ignore[arg-type]
                    clear_session_timeout=timeout_given and input.session_timeout is None,
                    home_group_id=group_key,
                    actor_session_id=context.require_session().session_id,
                )
                entry.group_path = await _home_path(key)
        except DomainError as exc:
            return UpdateUserPayload(
                errors=[UserError.of(exc)], client_mutation_id=input.client_mutation_id
            )
        await publish_sessions_ended(
            context.bus,
            context.require_scope().instance_id,
            session_ids=change.ended_session_ids,
        )
        return UpdateUserPayload(
            user=User.of(change.user), client_mutation_id=input.client_mutation_id
        )

    @strawberry.mutation(
        permission_classes=[Authenticated],
        description="Replace a user's permission sets (among those the viewer sees).",
    )
    async def assign_permission_sets(
        self, info: Info[Context, None], input: AssignPermissionSetsInput
    ) -> AssignPermissionSetsPayload:
        context = info.context
        key = decode_id(input.user_id, "User", "userId")
        set_keys = _keys(input.permission_set_ids, "PermissionSet", "permissionSetIds")
        detail = {"permissionSetIds": list(input.permission_set_ids)}
        try:
            async with audited(context, "assignPermissionSets", "User", key, detail) as entry:
                user = await users.assign_permission_sets(
                    context.require_scope(), context.require_session().user_id, key, set_keys
                )
                entry.group_path = await _home_path(key)
        except DomainError as exc:
            return AssignPermissionSetsPayload(
                errors=[UserError.of(exc)], client_mutation_id=input.client_mutation_id
            )
        return AssignPermissionSetsPayload(
            user=User.of(user), client_mutation_id=input.client_mutation_id
        )

    @strawberry.mutation(
        permission_classes=[Authenticated],
        description="A permission set on groups the viewer manages, granting nothing the "
        "viewer does not hold.",
    )
    async def create_permission_set(
        self, info: Info[Context, None], input: CreatePermissionSetInput
    ) -> CreatePermissionSetPayload:
        context = info.context
        group_keys = _keys(input.group_ids, "StaticGroup", "groupIds")
        detail = {"name": input.name[:255]}
        try:
            async with audited(
                context, "createPermissionSet", "PermissionSet", None, detail
            ) as entry:
                created = await permissions.create_permission_set(
                    context.require_scope(),
                    name=input.name,
                    description=input.description,
                    levels=_levels(input.levels),
                    group_ids=group_keys,
                )
                entry.object_id = created.id
                entry.group_path = await _group_path_of_set(created)
        except DomainError as exc:
            return CreatePermissionSetPayload(
                errors=[UserError.of(exc)], client_mutation_id=input.client_mutation_id
            )
        return CreatePermissionSetPayload(
            permission_set=PermissionSet.of(created), client_mutation_id=input.client_mutation_id
        )

    @strawberry.mutation(
        permission_classes=[Authenticated],
        description="Change a permission set the viewer manages; its holders' rights change.",
    )
    async def update_permission_set(
        self, info: Info[Context, None], input: UpdatePermissionSetInput
    ) -> UpdatePermissionSetPayload:
        context = info.context
        key = decode_id(input.permission_set_id, "PermissionSet", "permissionSetId")
        group_keys = (
            _keys(input.group_ids, "StaticGroup", "groupIds")
            if input.group_ids is not None
            else None
        )
        try:
            async with audited(context, "updatePermissionSet", "PermissionSet", key) as entry:
                updated = await permissions.update_permission_set(
                    context.require_scope(),
                    key,
                    name=input.name,
                    description=input.description,
                    levels=_levels(input.levels) if input.levels is not None else None,
                    group_ids=group_keys,
                )
                entry.group_path = await _group_path_of_set(updated)
        except DomainError as exc:
            return UpdatePermissionSetPayload(
                errors=[UserError.of(exc)], client_mutation_id=input.client_mutation_id
            )
        return UpdatePermissionSetPayload(
            permission_set=PermissionSet.of(updated), client_mutation_id=input.client_mutation_id
        )

    @strawberry.mutation(
        permission_classes=[Authenticated],
        description="Delete a permission set the viewer manages; its holders lose its rights.",
    )
    async def delete_permission_set(
        self, info: Info[Context, None], input: DeletePermissionSetInput
    ) -> DeletePermissionSetPayload:
        context = info.context
        key = decode_id(input.permission_set_id, "PermissionSet", "permissionSetId")
        try:
            async with audited(context, "deletePermissionSet", "PermissionSet", key) as entry:
                scope = context.require_scope()
                target = await permissions.get_visible(scope, key)
                entry.group_path = await _group_path_of_set(target)
                entry.detail["name"] = target.name
                await permissions.delete_permission_set(scope, key)
        except DomainError as exc:
            return DeletePermissionSetPayload(
                errors=[UserError.of(exc)], client_mutation_id=input.client_mutation_id
            )
        return DeletePermissionSetPayload(
            deleted_permission_set_id=input.permission_set_id,
            client_mutation_id=input.client_mutation_id,
        )
