"""Who is asking: the session and scope a bearer token signs in as (`sign_in`), resolved for
every operation by the `SignIn` extension; and `Authenticated`, the permission every root
field but `login` requires (root query fields are declared with `query()`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission
from strawberry.types import Info

from server.api.context import Context
from server.domain import accounts
from server.domain.access import scope_of


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


async def refresh(context: Context) -> None:
    """Reload the viewer after a change of what its session reaches."""
    await sign_in(context, context.token or "")


class SignIn(SchemaExtension):
    """Signs the viewer in for each operation, once it has passed parsing, validation and the
    query limits: a refused request costs no database work. An operation on a websocket runs
    with a context of its own, so it sees the viewer's rights (and a fresh set of loaders) as
    they are when it starts, not as they were at `connection_init`. An operation that finds
    the socket's session ended is refused like any unauthenticated request, then the socket is
    closed (4403)."""

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        if isinstance(context, Context):
            if context.socket is not None:
                context = self.execution_context.context = context.for_operation()
            if context.token:
                await sign_in(context, context.token)
        yield

    async def on_operation(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context.context
        socket = context.socket if isinstance(context, Context) else None
        if socket is not None and context.session is None and context.token is None:
            socket.session_ended.set()  # after the answer: the socket's watch closes it


class Authenticated(BasePermission):
    message = "sign in first: no valid bearer token"
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source: Any, info: Info[Context, None], **kwargs: Any) -> bool:
        return info.context.session is not None


def query(description: str | None = None) -> Any:
    """A root query field, for signed-in viewers."""
    return strawberry.field(permission_classes=[Authenticated], description=description)
