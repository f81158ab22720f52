"""Who is asking: the viewer of every operation, resolved from its bearer token once the
operation has passed parsing, validation and the query limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension

from server.api.accounts import sign_in
from server.api.context import Context


class SignIn(SchemaExtension):
    """Signs the viewer in for each operation. A refused request costs no database work; an
    operation on a websocket runs with a context of its own, so it sees the viewer's rights
    (and a fresh set of loaders) as they are when it starts, not as they were at
    `connection_init`. An operation that finds the socket's session ended is refused like any
    unauthenticated request, then the socket is closed (4403)."""

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
