"""The GraphQL endpoint: Strawberry's ASGI view, with the viewer resolved from the bearer token
(HTTP header or the websocket's `connection_init` payload)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UnsetType

from server.api.accounts import sign_in
from server.api.context import Context
from server.domain.throttle import LoginThrottle
from server.events import EventBus
from server.settings import Settings


def bearer(value: object) -> str | None:
    if not isinstance(value, str) or not value.startswith("Bearer "):
        return None
    return value.removeprefix("Bearer ").strip() or None


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, schema: Any, settings: Settings, bus: EventBus) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allowed_origins=settings.cors_origins,
        )
        self.settings = settings
        self.bus = bus
        self.login_throttle = LoginThrottle(settings.login_attempts_per_minute)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:  # type: ignore[override]
        client = request.client.host if request.client else None
        context = Context(
            settings=self.settings,
            bus=self.bus,
            request=request,
            response=response,
            client_address=client,
            login_throttle=self.login_throttle,
        )
        if isinstance(request, Request):
            token = bearer(request.headers.get("authorization"))
            if token:
                await sign_in(context, token)
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:  # type: ignore[override]
        params = context.connection_params or {}
        token = bearer(params.get("authorization") or params.get("Authorization"))
        if token:
            await sign_in(context, token)
        if context.session is None:
            raise ConnectionRejectionError()
        return await super().on_ws_connect(context)
