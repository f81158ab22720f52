"""The request context: settings, the event bus and hub, the viewer and its scope, the loaders.

One context serves one HTTP request, or one operation on a websocket: the socket's own
context (made at the handshake) only holds what its operations share, and each operation runs
with a copy of it, signed in afresh (`server.api.sessions.SignIn`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from server.api.errors import Unauthenticated
from server.api.loaders import Loaders
from server.domain.access import NO_SCOPE, Scope
from server.domain.accounts import SessionInfo
from server.events import EventBus
from server.hub import Hub
from server.settings import Settings


@dataclass
class Socket:
    """What the operations of one websocket share for as long as it stays open."""

    open_subscriptions: int = 0
    session_watch: asyncio.Task[None] | None = None
    session_ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Context:
    settings: Settings
    bus: EventBus
    request: Request | WebSocket | None = None
    response: Response | WebSocket | None = None
    session: SessionInfo | None = None
    scope: Scope | None = None
    _loaders: Loaders | None = field(init=False, default=None, repr=False)
    connection_params: dict[str, Any] | None = None
    client_address: str | None = None
    token: str | None = None  # the bearer token sent; once signed in, the session's
    socket: Socket | None = None  # set on a websocket's contexts
    hub: Hub | None = None  # the worker's subscription hub (server/api/subscriptions.py)

    @property
    def loaders(self) -> Loaders:
        """Built at first use, for the scope signed in: an event whose fields read nothing
        more (most subscriptions) never builds one, which matters for a thousand of them."""
        if self._loaders is None:
            self._loaders = Loaders(self.scope or NO_SCOPE, self.settings)
        return self._loaders

    def for_operation(self) -> Context:
        """A context of its own for one operation on a websocket: nobody until signed in."""
        return replace(self, session=None, scope=None)

    def sign_in(self, session: SessionInfo | None, scope: Scope | None, token: str | None) -> None:
        """Act as this session from now on (fresh loaders: what is visible changed)."""
        self.session, self.scope, self.token = session, scope, token
        self._loaders = None

    def require_session(self) -> SessionInfo:
        if self.session is None:
            raise Unauthenticated("sign in first: no valid bearer token")
        return self.session

    def require_scope(self) -> Scope:
        """The viewer's scope; empty for an account that has no instance yet."""
        self.require_session()
        return self.scope or NO_SCOPE
