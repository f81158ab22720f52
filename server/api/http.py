"""The GraphQL endpoint: Strawberry's ASGI view, with the viewer resolved from the bearer token
(HTTP header or the websocket's `connection_init` payload), automatic persisted queries, and
the media types of the GraphQL-over-HTTP spec."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.unset import UnsetType

from graphql import GraphQLError
from server import events
from server.api.authentication import sign_in
from server.api.context import Context, Socket
from server.api.persisted import PersistedQueries, PersistedQueryMismatch, PersistedQueryNotFound
from server.api.subscriptions import make_hub
from server.client_address import client_address
from server.domain.accounts import resolve_session
from server.events import EventBus
from server.settings import Settings

GRAPHQL_RESPONSE = "application/graphql-response+json"
SESSION_RECHECK_SECONDS = 30.0  # how soon an expired session's sockets close


def bearer(value: object) -> str | None:
    if not isinstance(value, str) or not value.startswith("Bearer "):
        return None
    return value.removeprefix("Bearer ").strip() or None


def wants_graphql_response(request: Request) -> bool:
    """Whether the client accepts the spec's media type (preferred when it does)."""
    return GRAPHQL_RESPONSE in request.headers.get("accept", "")


def is_request_error(result: ExecutionResult) -> bool:
    """Whether the request failed before anything ran (parse, validation, limits)."""
    errors = result.errors or []
    return result.data is None and bool(errors) and not any(e.path for e in errors)


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, schema: Any, settings: Settings, bus: EventBus) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allowed_origins=settings.cors_origins,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),  # not the legacy graphql-ws
            # a socket that never sends connection_init holds a capped connection slot till then
            connection_init_wait_timeout=dt.timedelta(seconds=settings.websocket_init_timeout),
        )
        self.settings = settings
        self.bus = bus
        self.hub = make_hub(bus, settings.session_ttl)  # one per worker: one app per worker
        self.persisted = PersistedQueries(settings.persisted_query_bytes)

    def encode_json(self, data: object) -> str:
        return orjson.dumps(data).decode()  # text: websockets send it as a text frame

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        """The viewer is not known yet: `SignIn` resolves the token once the operation has
        passed the limits (over a websocket, the token comes with `connection_init`)."""
        websocket = isinstance(request, WebSocket)
        return Context(
            settings=self.settings,
            bus=self.bus,
            request=request,
            response=response,
            client_address=client_address(request, self.settings),
            token=None if websocket else bearer(request.headers.get("authorization")),
            socket=Socket() if websocket else None,
            hub=self.hub,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Accept a socket whose token signs in, and watch its session from then on
        (graphql-transport-ws refuses a second `connection_init` with 4429 before this)."""
        params = context.connection_params or {}
        token = bearer(params.get("authorization") or params.get("Authorization"))
        if token:
            await sign_in(context, token)
        if context.session is None or context.socket is None:
            raise ConnectionRejectionError()
        websocket = context.request
        if isinstance(websocket, WebSocket):
            context.socket.session_watch = asyncio.create_task(
                self._end_with_session(websocket, context), name="websocket-session-watch"
            )
        return await super().on_ws_connect(context)

    async def _end_with_session(self, websocket: WebSocket, context: Context) -> None:
        """Close the socket with 4403 once its session ends: logout, expiry, user disabled,
        or an operation that found it ended."""
        session, socket = context.session, context.socket
        assert session is not None and socket is not None

        def ends_this(payload: dict[str, Any]) -> bool:
            return session.session_id in payload.get("session_ids", ()) or (
                session.user_id is not None and session.user_id in payload.get("user_ids", ())
            )

        async def ended_event() -> None:
            async with self.bus.subscribe(events.SESSION_ENDED) as stream:
                async for payload in stream:
                    if ends_this(payload):
                        return

        async def expired() -> None:
            while True:
                await asyncio.sleep(SESSION_RECHECK_SECONDS)
                if await resolve_session(context.token or "", self.settings.session_ttl) is None:
                    return

        watchers = [
            asyncio.create_task(ended_event()),
            asyncio.create_task(expired()),
            asyncio.create_task(socket.session_ended.wait()),
        ]
        try:
            await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(code=4403, reason="session ended")
        finally:
            for watcher in watchers:
                watcher.cancel()

    async def parse_http_body(self, request: Any) -> Any:
        data = await super().parse_http_body(request)
        if isinstance(data, list):
            raise HTTPException(400, "batched requests are not supported")
        return data

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        """Run the document sent, or the persisted one its hash names; remember a document
        sent with its hash once it has run for a signed-in viewer."""
        assert not isinstance(request_data, list)  # refused by parse_http_body
        try:
            query, registration = self.persisted.resolve(
                request_data.query, request_data.extensions
            )
        except PersistedQueryMismatch as exc:
            raise HTTPException(400, str(exc)) from None
        if query is not request_data.query:
            request_data = dataclasses.replace(request_data, query=query)
        result = await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )
        if (
            registration is not None
            and isinstance(result, ExecutionResult)
            and not is_request_error(result)
            and context.session is not None
        ):
            self.persisted.remember(registration)
        return result

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        body = process_result(result)
        if is_request_error(result):
            body.pop("data", None)  # nothing ran, so no `data` entry
            request.state.request_error = True
        return body

    async def run(
        self, request: Request | WebSocket, context: Any = None, root_value: Any = None
    ) -> Any:
        if isinstance(request, WebSocket):
            context = await self.get_context(request, request)
            try:
                return await super().run(request, context=context)
            finally:  # the socket is gone: stop watching its session
                if context.socket is not None and context.socket.session_watch is not None:
                    context.socket.session_watch.cancel()
        try:
            response = await super().run(request)
        except HTTPException as exc:
            if request.method == "GET" and "mutation" in exc.reason.lower():
                # the spec's answer to a mutation sent by GET
                raise HTTPException(405, "mutations are only accepted by POST") from None
            raise
        except PersistedQueryNotFound:
            error = GraphQLError(
                "PersistedQueryNotFound", extensions={"code": "PERSISTED_QUERY_NOT_FOUND"}
            )
            response = JSONResponse({"errors": [error.formatted]})
        if wants_graphql_response(request) and response.media_type == "application/json":
            response.headers["content-type"] = GRAPHQL_RESPONSE
            if getattr(request.state, "request_error", False):
                response.status_code = 400
        return response
