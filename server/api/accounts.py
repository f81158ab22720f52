"""Accounts (registered with one portal or both) and signing in and out: `login`, `logout`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server import events
from server.api.authentication import sign_in
from server.api.context import Context
from server.api.enums import Service
from server.api.mutations import mutation, mutation_input, payload
from server.api.node import Node, resolves
from server.domain import accounts, audit, global_ids, throttle
from server.domain.errors import InvalidCredentials
from server.models import Account as AccountModel
from server.settings import Settings

if TYPE_CHECKING:
    from server.api.viewer import Viewer


@strawberry.type
class Account(Node):
    id: strawberry.ID
    email: str
    services: list[Service]

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


async def own_account(context: Context) -> Account | None:
    """The viewer's account, for an account owner (a console user has none)."""
    session = context.session
    found = await accounts.own_account(session) if session is not None else None
    return Account.of(found) if found else None


@resolves("Account")
async def account_node(info: Info[Context, None], key: int) -> Account | None:
    session = info.context.session
    if session is None or session.account_id != key:
        return None
    return await own_account(info.context)


@mutation_input
class LoginInput:
    email: str
    password: str
    via: Service | None = None


@payload
class LoginPayload:
    token: str | None = None
    viewer: Annotated[Viewer, strawberry.lazy("server.api.viewer")] | None = None


@mutation_input
class LogoutInput:
    """Nothing but clientMutationId."""


@payload
class LogoutPayload:
    """Nothing but errors and clientMutationId."""


@strawberry.type
class AccountMutations:
    @mutation("Sign in; `via` is the portal of an account owner.", signed_in=False)
    async def login(self, info: Info[Context, None], input: LoginInput) -> LoginPayload:
        from server.api.viewer import viewer_of

        context = info.context
        settings = context.settings
        try:
            attempt = await throttle.begin_sign_in(
                input.email, context.client_address, sign_in_limits(settings), settings.secret_key
            )
            token, _ = await accounts.login(
                input.email, input.password, input.via, settings.session_ttl
            )
        except InvalidCredentials as exc:
            await audit.record_failed_login(input.email, exc.code, service_name(input.via))
            raise
        await throttle.succeeded(attempt)
        await sign_in(context, token)
        await _record_own(context, "login", {"via": service_name(input.via)})
        return LoginPayload(token=token, viewer=viewer_of(context))

    @mutation()
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
        return LogoutPayload()


def sign_in_limits(settings: Settings) -> throttle.SignInLimits:
    return throttle.SignInLimits(
        per_account_and_address=settings.login_attempts_per_minute,
        per_address=settings.login_attempts_per_address_per_minute,
        per_account_from_unknown_sites=settings.login_attempts_per_account_per_hour,
        known_site_days=settings.login_known_site_days,
    )


def service_name(via: Service | None) -> str | None:
    """A service as the audit log records it (None for a console user's own sign-in)."""
    return via.value if via is not None else None


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
