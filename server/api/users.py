"""Console users: `users` (those living within the viewer's USERS scope) and the mutations that
manage them, each within the manager's own rights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.authentication import query
from server.api.context import Context
from server.api.groups import StaticGroup
from server.api.mutations import audited, mutation, mutation_input, payload
from server.api.node import Node, decode_id, decode_ids, decode_optional_id, refetchable
from server.api.pagination import Connection, page_request, paginate
from server.domain import global_ids, groups, users
from server.domain.accounts import publish_sessions_ended
from server.models import User as UserModel

if TYPE_CHECKING:
    from server.api.permission_sets import PermissionSet


@strawberry.type
class User(Node):
    id: strawberry.ID
    email: str
    enabled: bool
    description: str
    tag: str
    session_timeout: int | None
    is_owner: bool
    model: strawberry.Private[UserModel]

    @classmethod
    def of(cls, model: UserModel) -> User:
        return cls(
            id=strawberry.ID(global_ids.encode("User", model.id)),
            email=model.email,
            enabled=model.enabled,
            description=model.description,
            tag=model.tag,
            session_timeout=model.session_timeout,
            is_owner=model.is_owner,
            model=model,
        )

    @strawberry.field
    async def home_group(self, info: Info[Context, None]) -> StaticGroup:
        scope = info.context.require_scope()
        group = await info.context.loaders.group_by_id.load(self.model.home_group_id)
        if group is None and self.model.id == scope.user_id:
            group = await groups.own_home_group(scope)
        if group is None:  # USERS on its home group is what makes another user visible
            raise RuntimeError(f"user {self.model.id} has no visible home group")
        return StaticGroup.of(group)

    @strawberry.field(description="The user's permission sets that the viewer may see.")
    async def permission_sets(
        self, info: Info[Context, None]
    ) -> list[Annotated[PermissionSet, strawberry.lazy("server.api.permission_sets")]]:
        from server.api.permission_sets import PermissionSet

        found = await info.context.loaders.permission_sets_by_user.load(self.model.id)
        return [PermissionSet.of(s) for s in found or []]


refetchable("User", lambda loaders: loaders.user_by_id, User.of)


@strawberry.type
class UserQueries:
    @query("Console users living within the viewer's USERS scope, by email.")
    async def users(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        search: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[User]:
        request = page_request(first, after, last, before)
        listing = users.visible(info.context.require_scope(), search)
        return await paginate(listing, request, User.of)


@mutation_input
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


@payload
class CreateUserPayload:
    user: User | None = None


@mutation_input
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


@payload
class UpdateUserPayload:
    user: User | None = None


@mutation_input
class AssignPermissionSetsInput:
    user_id: strawberry.ID
    permission_set_ids: list[strawberry.ID] = strawberry.field(
        description="The user's sets from now on (sets the viewer cannot see are kept)."
    )


@payload
class AssignPermissionSetsPayload:
    user: User | None = None


@strawberry.type
class UserMutations:
    @mutation(
        "A native console user in a group the viewer manages (WRITE on USERS), with "
        "permission sets granting nothing the viewer does not hold."
    )
    async def create_user(
        self, info: Info[Context, None], input: CreateUserInput
    ) -> CreateUserPayload:
        context = info.context
        group_key = decode_id(input.home_group_id, "StaticGroup", "homeGroupId")
        set_keys = decode_ids(input.permission_set_ids, "PermissionSet", "permissionSetIds")
        scope = context.require_scope()
        detail = {"email": input.email[:254]}
        async with audited(context, "createUser", "User", None, detail) as entry:
            user = await users.create_user(
                scope,
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
            entry.group_path = await users.home_group_path(scope, user.id)
        return CreateUserPayload(user=User.of(user))

    @mutation(
        "Enable or disable a user (disabling ends its sessions at once) or change its details."
    )
    async def update_user(
        self, info: Info[Context, None], input: UpdateUserInput
    ) -> UpdateUserPayload:
        context = info.context
        key = decode_id(input.user_id, "User", "userId")
        group_key = decode_optional_id(input.home_group_id, "StaticGroup", "homeGroupId")
        timeout_given = input.session_timeout is not strawberry.UNSET
        scope, session = context.require_scope(), context.require_session()
        detail = {
            "enabled": input.enabled,
            "passwordChanged": input.password is not None,
            "homeGroupChanged": group_key is not None,
        }
        async with audited(context, "updateUser", "User", key, detail) as entry:
            change = await users.update_user(
                scope,
                session.user_id,
                key,
                enabled=input.enabled,
                password=input.password,
                description=input.description,
                tag=input.tag,
                session_timeout_seconds=input.session_timeout if timeout_given else None,
                clear_session_timeout=timeout_given and input.session_timeout is None,
                home_group_id=group_key,
                actor_session_id=session.session_id,
            )
            entry.group_path = await users.home_group_path(scope, key)
        await publish_sessions_ended(
            context.bus, scope.instance_id, session_ids=change.ended_session_ids
        )
        return UpdateUserPayload(user=User.of(change.user))

    @mutation("Replace a user's permission sets (among those the viewer sees).")
    async def assign_permission_sets(
        self, info: Info[Context, None], input: AssignPermissionSetsInput
    ) -> AssignPermissionSetsPayload:
        context = info.context
        key = decode_id(input.user_id, "User", "userId")
        set_keys = decode_ids(input.permission_set_ids, "PermissionSet", "permissionSetIds")
        scope = context.require_scope()
        detail = {"permissionSetIds": list(input.permission_set_ids)}
        async with audited(context, "assignPermissionSets", "User", key, detail) as entry:
            user = await users.assign_permission_sets(
                scope, context.require_session().user_id, key, set_keys
            )
            entry.group_path = await users.home_group_path(scope, key)
        return AssignPermissionSetsPayload(user=User.of(user))
