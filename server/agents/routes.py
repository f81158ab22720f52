"""The agent HTTP API: `POST /agent/v1/enroll` and `POST /agent/v1/checkin`.

JSON in and out (orjson). Bodies over 64 KiB answer 413, malformed JSON or wrong fields 400,
a missing, unknown or superseded token 401, too many requests 429 (check-ins per agent token;
enrolments per installer token and per client address); nothing is written on any of them.
Check-ins are answered from memory and written in batches.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from server.agents.rate_limit import TokenBuckets
from server.agents.runtime import AgentRuntime
from server.client_address import client_address, site
from server.domain import global_ids
from server.domain.agents import AgentUnauthorized, parse_enrolment, parse_report
from server.domain.errors import InvalidInput
from server.domain.secrets import token_hash, well_formed_token
from server.events import EventBus, InProcessEventBus
from server.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "/agent/v1"
MAX_BODY_BYTES = 64 * 1024
JSON = "application/json"


class AgentRequestRefused(Exception):
    """A request answered with a 4xx before anything is written."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.field = field
        self.headers = headers

    def response(self) -> Response:
        body = {"error": self.message, "code": self.code, "field": self.field}
        return Response(orjson.dumps(body), self.status, self.headers, media_type=JSON)


def _unauthorized(message: str) -> AgentRequestRefused:
    return AgentRequestRefused(
        401, message, code="UNAUTHENTICATED", headers={"WWW-Authenticate": "Bearer"}
    )


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("missing bearer token")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not well_formed_token(token):
        raise _unauthorized("malformed bearer token")
    return token


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 past `limit` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise AgentRequestRefused(400, "malformed Content-Length", code="INVALID_INPUT")
        if int(declared) > limit:
            raise AgentRequestRefused(413, f"body larger than {limit} bytes", code="TOO_LARGE")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise AgentRequestRefused(413, f"body larger than {limit} bytes", code="TOO_LARGE")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, *, empty: Any = None) -> Any:
    if not raw.strip() and empty is not None:
        return empty
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AgentRequestRefused(400, f"malformed JSON: {exc}", code="INVALID_INPUT") from None


def _invalid(exc: InvalidInput) -> AgentRequestRefused:
    return AgentRequestRefused(400, exc.message, code=exc.code, field=exc.field)


def _throttle(limits: TokenBuckets, key: str, what: str) -> None:
    wait = limits.acquire(key)
    if wait > 0:
        raise AgentRequestRefused(
            429,
            f"too many requests for {what}",
            code="RATE_LIMITED",
            headers={"Retry-After": limits.retry_after(wait)},
        )


def address_key(address: str | None) -> str:
    """The enrolment limiter's key for a client address (its `site`)."""
    return f"address:{site(address)}"


def agent_routes(runtime: AgentRuntime) -> list[BaseRoute]:
    """The agent API's routes, served by `runtime` (whose start/stop the app lifespan owns)."""

    async def enroll(request: Request) -> Response:
        try:
            token = bearer_token(request)
            body = parse_json(await read_body(request))
            try:
                enrolment_request = parse_enrolment(body)
            except InvalidInput as exc:
                raise _invalid(exc) from None
            # The caller chooses hardware ids, so the limits are per installer and per address.
            address = client_address(request, runtime.settings)
            _throttle(runtime.enrolment_limits, address_key(address), "this address")
            _throttle(runtime.enrolment_limits, f"installer:{token_hash(token)}", "this installer")
            try:
                enrolment = await runtime.enroll(token, enrolment_request, address)
            except AgentUnauthorized as exc:
                raise _unauthorized(exc.message) from None
        except AgentRequestRefused as refused:
            return refused.response()
        except ClientDisconnect:
            return Response(status_code=400)
        payload = {
            "computerId": global_ids.encode("Computer", enrolment.computer.id),
            "agentToken": enrolment.agent_token,
            "checkInIntervalSeconds": enrolment.interval,
        }
        return Response(orjson.dumps(payload), 201, media_type=JSON)

    async def checkin(request: Request) -> Response:
        try:
            token = bearer_token(request)
            body = parse_json(await read_body(request), empty={})
            try:
                report = parse_report(body)
            except InvalidInput as exc:
                raise _invalid(exc) from None
            agent_hash = token_hash(token)
            _throttle(runtime.limits, agent_hash, "this token")
            identity = await runtime.authenticate(agent_hash)
            if identity is None:
                raise _unauthorized("unknown or superseded agent token")
        except AgentRequestRefused as refused:
            return refused.response()
        except ClientDisconnect:
            return Response(status_code=400)
        interval = runtime.record_checkin(identity, report, datetime.now(UTC))
        return Response(orjson.dumps({"nextCheckInSeconds": interval}), 200, media_type=JSON)

    return [
        Route(f"{PREFIX}/enroll", enroll, methods=["POST"], name="agent_enroll"),
        Route(f"{PREFIX}/checkin", checkin, methods=["POST"], name="agent_checkin"),
    ]


def create_agent_app(
    settings: Settings,
    bus: EventBus | None = None,
    *,
    runtime: AgentRuntime | None = None,
) -> Starlette:
    """An app serving only the agent API (for `MSP_CONSOLE_AGENT_PORT`, or a process of its own).

    Given the main app's `runtime`, it only routes to it (the main lifespan starts and stops it).
    Without one it stands alone: its lifespan opens the database, and starts and stops its own
    runtime and bus.
    """
    if runtime is not None:
        return Starlette(routes=agent_routes(runtime))

    from tortoise.contrib.starlette import RegisterTortoise

    from server.models.db import tortoise_config

    own_bus = bus or InProcessEventBus()
    own_runtime = AgentRuntime(settings, own_bus)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with RegisterTortoise(app, config=tortoise_config(settings.database_url)):
            await own_bus.start()
            await own_runtime.start()
            try:
                yield
            finally:
                try:
                    await own_runtime.stop()
                finally:
                    await own_bus.stop()

    app = Starlette(routes=agent_routes(own_runtime), lifespan=lifespan)
    app.state.agent_runtime = own_runtime
    return app
