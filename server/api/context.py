"""The request context: settings, the event bus, the viewer and its scope, the loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from server.api.errors import Unauthenticated
from server.api.loaders import Loaders
from server.domain.access import NO_SCOPE, Scope
from server.domain.accounts import SessionInfo
from server.events import EventBus
from server.settings import Settings


@dataclass
class Context:
    settings: Settings
    bus: EventBus
    request: Request | WebSocket | None = None
    response: Response | WebSocket | None = None
    session: SessionInfo | None = None
    scope: Scope | None = None
    loaders: Loaders = field(init=False)
    connection_params: dict[str, Any] | None = None
    client_address: str | None = None
    token: str | None = None
    open_subscriptions: int = 0  # on this websocket: a context lives as long as its socket

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.scope or NO_SCOPE, self.settings)

    def sign_in(self, session: SessionInfo | None, scope: Scope | None, token: str | None) -> None:
        """Act as this session from now on (fresh loaders: what is visible changed)."""
        self.session, self.scope, self.token = session, scope, token
        self.loaders = Loaders(scope or NO_SCOPE, self.settings)

    def require_session(self) -> SessionInfo:
        if self.session is None:
            raise Unauthenticated("sign in first: no valid bearer token")
        return self.session

    def require_scope(self) -> Scope:
        """The viewer's scope; empty for an account that has no instance yet."""
        self.require_session()
        return self.scope or NO_SCOPE
