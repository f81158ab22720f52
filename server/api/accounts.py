"""Accounts, console users, the viewer, sign-in and instances (created through one service,
reached through all of the account's, removed only through the creating one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server import events
from server.api.context import Context
from server.api.enums import MspStatus, Service
from server.api.errors import ForbiddenError, UserError
from server.api.groups import StaticGroup
from server.api.node import Node, decode_id, resolves
from server.api.permissions import Authenticated
from server.api.sync import SyncRun
from server.domain import accounts, audit, global_ids, groups, instances, sync_runs, throttle
from server.domain.access import scope_of
from server.domain.errors import DomainError, InvalidCredentials
from server.models import Account as AccountModel
from server.models import Instance as InstanceModel
from server.models import User as UserModel
from server.settings import Settings

if TYPE_CHECKING:
    from server.api.users import PermissionSet


@strawberry.type
class Account(Node):
    id: strawberry.ID
    email: str
    services: list[Service]  # type: ignore[valid-type]

    @strawberry.field(description="Registered with both services.")
    def mixed(self) -> bool:
        return len(self.services) > 1

    @classmethod
    def of(cls, model: AccountModel) -> Account:
        return cls(
            id=strawberry.ID(global_ids.encode("Account", model.id)),
            email=model.email,
            services=model.service_list,
        )


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
        group = await info.context.loaders.group_by_id.load(self.model.home_group_id)  # type: ignore[attr-defined]
        if group is None and self.model.id == scope.user_id:
            group = await groups.own_home_group(scope)
        if group is None:  # USERS on its home group is what makes another user visible
            raise RuntimeError(f"user {self.model.id} has no visible home group")
        return StaticGroup.of(group)

    @strawberry.field(description="The user's permission sets that the viewer may see.")
    async def permission_sets(
        self, info: Info[Context, None]
    ) -> list[Annotated[PermissionSet, strawberry.lazy("server.api.users")]]:
        from server.api.users import PermissionSet

        found = await info.context.loaders.permission_sets_by_user.load(self.model.id)
        return [PermissionSet.of(s) for s in found or []]


@strawberry.type
class Instance(Node):
    id: strawberry.ID
    name: str
    created_via: Service  # type: ignore[valid-type]
    accessible_via: list[Service]  # type: ignore[valid-type]
    model: strawberry.Private[InstanceModel]

    @classmethod
    def of(cls, model: InstanceModel, account: AccountModel) -> Instance:
        return cls(
            id=strawberry.ID(global_ids.encode("Instance", model.id)),
            name=model.name,
            created_via=model.created_via,
            accessible_via=instances.accessible_via(model, account),
            model=model,
        )

    @strawberry.field
    async def msp_status(self) -> MspStatus:
        return MspStatus(await instances.msp_status(self.model))

    @strawberry.field(description="The MSP Administrator this instance syncs from, if any.")
    def msp_administrator_url(self) -> str | None:
        return self.model.upstream_url

    @strawberry.field(description="The latest sync run.")
    async def last_sync(self, info: Info[Context, None]) -> SyncRun | None:
        run = await sync_runs.latest(info.context.require_scope())
        return SyncRun.of(run) if run else None


@strawberry.type
class Viewer:
    via: Service | None  # type: ignore[valid-type]
    _context: strawberry.Private[Context]

    @strawberry.field
    async def account(self) -> Account | None:
        session = self._context.session
        if session is None or session.account_id is None:
            return None
        return Account.of(await AccountModel.get(id=session.account_id))

    @strawberry.field
    async def user(self) -> User | None:
        session = self._context.session
        if session is None or session.user_id is None:
            return None
        return User.of(await UserModel.get(id=session.user_id))

    @strawberry.field
    async def instance(self) -> Instance | None:
        return await viewer_instance(self._context)


async def viewer_instance(context: Context) -> Instance | None:
    session = context.session
    if session is None or session.instance_id is None:
        return None
    model = await InstanceModel.get(id=session.instance_id).prefetch_related("owner")
    return Instance.of(model, model.owner)


def viewer_of(context: Context) -> Viewer:
    return Viewer(via=context.session.via if context.session else None, _context=context)


@resolves("Instance")
async def instance_node(info: Info[Context, None], key: int) -> Instance | None:
    instance = await viewer_instance(info.context)
    return instance if instance and instance.model.id == key else None


@resolves("User")
async def user_node(info: Info[Context, None], key: int) -> User | None:
    user = await info.context.loaders.user_by_id.load(key)
    return User.of(user) if user else None


@resolves("Account")
async def account_node(info: Info[Context, None], key: int) -> Account | None:
    session = info.context.session
    if session is None or session.account_id != key:
        return None
    return Account.of(await AccountModel.get(id=key))


async def sign_in(context: Context, token: str) -> None:
    """Make the context act as the session of `token` (or as nobody)."""
    session = await accounts.resolve_session(token, context.settings.session_ttl)
    scope = None
    if session is not None:
        scope = await scope_of(
            session.instance_id,
            session.user_id,
            session.owner,
            session.home_group_path,
            session.grants,
        )
    context.sign_in(session, scope, token if session else None)


# Mutations -------------------------------------------------------------------------------


@strawberry.input
class LoginInput:
    email: str
    password: str
    via: Service | None = None  # type: ignore[valid-type]
    client_mutation_id: str | None = None


@strawberry.type
class LoginPayload:
    token: str | None = None
    viewer: Viewer | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


@strawberry.input
class LogoutInput:
    client_mutation_id: str | None = None


@strawberry.type
class LogoutPayload:
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


@strawberry.input
class CreateInstanceInput:
    name: str | None = None
    client_mutation_id: str | None = None


@strawberry.type
class CreateInstancePayload:
    instance: Instance | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


@strawberry.input
class RemoveInstanceInput:
    instance_id: strawberry.ID
    client_mutation_id: str | None = None


@strawberry.type
class RemoveInstancePayload:
    removed_instance_id: strawberry.ID | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


def _portal_session(context: Context) -> accounts.SessionInfo:
    session = context.require_session()
    if session.via is None or session.account_id is None:
        raise ForbiddenError("only an account owner signed in through a portal may do this")
    return session


@strawberry.type
class AccountQueries:
    @strawberry.field(permission_classes=[Authenticated])
    def viewer(self, info: Info[Context, None]) -> Viewer | None:
        return viewer_of(info.context)

    @strawberry.field(permission_classes=[Authenticated])
    async def instance(self, info: Info[Context, None]) -> Instance | None:
        return await viewer_instance(info.context)


@strawberry.type
class AccountMutations:
    @strawberry.mutation(description="Sign in; `via` is the portal of an account owner.")
    async def login(self, info: Info[Context, None], input: LoginInput) -> LoginPayload:
        context = info.context
        settings = context.settings
        try:
            attempt = await throttle.begin_sign_in(
                input.email, context.client_address, sign_in_limits(settings), settings.secret_key
            )
            token, _ = await accounts.login(
                input.email, input.password, input.via, settings.session_ttl
            )
        except DomainError as exc:
            if isinstance(exc, InvalidCredentials):
                await audit.record_failed_login(input.email, exc.code, _via(input.via))
            return LoginPayload(
                errors=[UserError.of(exc)], client_mutation_id=input.client_mutation_id
            )
        await throttle.succeeded(attempt)
        await sign_in(context, token)
        await _record_own(context, "login", {"via": _via(input.via)})
        return LoginPayload(
            token=token, viewer=viewer_of(context), client_mutation_id=input.client_mutation_id
        )

    @strawberry.mutation(permission_classes=[Authenticated])
    async def logout(
        self, info: Info[Context, None], input: LogoutInput | None = None
    ) -> LogoutPayload:
        session = info.context.require_session()
        await _record_own(info.context, "logout")
        await accounts.logout(session.session_id)
        await info.context.bus.publish(
            events.SESSION_ENDED,
            {"instance_id": session.instance_id, "session_ids": [session.session_id]},
        )
        info.context.sign_in(None, None, None)
        return LogoutPayload(client_mutation_id=input.client_mutation_id if input else None)

    @strawberry.mutation(
        permission_classes=[Authenticated],
        description="Create the account's instance through the service of the session.",
    )
    async def create_instance(
        self, info: Info[Context, None], input: CreateInstanceInput
    ) -> CreateInstancePayload:
        context = info.context
        session = _portal_session(context)
        try:
            async with audit.recorded(
                context.scope,
                session.user_id,
                "createInstance",
                "Instance",
                session.instance_id,
                instance_id=session.instance_id,
            ) as entry:
                created = await instances.create_instance(
                    session.account_id,  # type: ignore[arg-type]
                    session.via,
                    input.name,
                )
                entry.instance_id = entry.object_id = created.id
                entry.actor = (await UserModel.get(instance_id=created.id)).id
        except DomainError as exc:
            return CreateInstancePayload(
                errors=[UserError.of(exc)], client_mutation_id=input.client_mutation_id
            )
        await refresh(context)
        return CreateInstancePayload(
            instance=await viewer_instance(context), client_mutation_id=input.client_mutation_id
        )

    @strawberry.mutation(
        permission_classes=[Authenticated],
        description="Remove the instance; only through the service that created it.",
    )
    async def remove_instance(
        self, info: Info[Context, None], input: RemoveInstanceInput
    ) -> RemoveInstancePayload:
        context = info.context
        session = _portal_session(context)
        key = decode_id(input.instance_id, "Instance", "instanceId")
        try:
            await instances.remove_instance(session.account_id, session.via, key)  # type: ignore[arg-type]
        except DomainError as exc:
            if key == session.instance_id:  # a success takes the instance's log with it
                await audit.record(
                    context.scope,
                    session.user_id,
                    "removeInstance",
                    "Instance",
                    key,
                    outcome=exc.code,
                    detail={"via": _via(session.via)},
                )
            return RemoveInstancePayload(
                errors=[UserError.of(exc)], client_mutation_id=input.client_mutation_id
            )
        await refresh(context)
        return RemoveInstancePayload(
            removed_instance_id=input.instance_id, client_mutation_id=input.client_mutation_id
        )


def sign_in_limits(settings: Settings) -> throttle.SignInLimits:
    return throttle.SignInLimits(
        per_account_and_address=settings.login_attempts_per_minute,
        per_address=settings.login_attempts_per_address_per_minute,
    )


def _via(via: object) -> str | None:
    return via.value if isinstance(via, Service) else None  # type: ignore[attr-defined]


async def _record_own(
    context: Context, action: str, detail: dict[str, object] | None = None
) -> None:
    """An audit entry about the viewer's own session (sign-in, sign-out)."""
    session = context.session
    if session is not None and session.user_id is not None:
        await audit.record(
            context.scope,
            session.user_id,
            action,
            "User",
            session.user_id,
            session.home_group_path or "",
            detail=detail,
        )


async def refresh(context: Context) -> None:
    """Reload the viewer after a change of what its session reaches."""
    await sign_in(context, context.token or "")
