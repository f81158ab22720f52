"""The simulator's HTTP side: the six endpoints, the faults wrapped around them, and a
`Simulator` that serves them on a real port."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from aiohttp import web

from server.upstream.codes import HQ
from server.upstream.simulator.company_tree import UpstreamTree
from server.upstream.simulator.faults import Call, FaultRule, Faults
from server.upstream.simulator.license_book import licenses_page
from server.upstream.simulator.state import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    Answer,
    SimulatorState,
    SimulatorUser,
    Walk,
    bad_request,
    error,
    is_int,
    not_found,
    ref,
)

logger = logging.getLogger(__name__)

SIMULATOR_STATE = web.AppKey("simulator_state", SimulatorState)

_BEFORE = frozenset(
    {"maintenance", "rate_limit", "server_error", "drop", "slow", "huge", "redirect"}
)
_AFTER = frozenset({"malformed"})


class _Handlers:
    """The six endpoints. Each returns an `Answer`; `dispatch` wraps them with the faults."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def token_get(self, request: web.Request, body: Any) -> Answer:
        if not (
            isinstance(body, dict)
            and isinstance(body.get("username"), str)
            and isinstance(body.get("password"), str)
        ):
            return bad_request("username and password are required")
        user = self.state.users.get(body["username"])
        if user is None or not secrets.compare_digest(user.password, body["password"]):
            return error(401, 1, 1, "invalid username or password")
        return Answer(200, self.state._issue(user.username))

    async def token_renew(self, request: web.Request, body: Any) -> Answer:
        if not (isinstance(body, dict) and isinstance(body.get("refreshToken"), str)):
            return bad_request("refreshToken is required")
        username = self.state._refresh.pop(body["refreshToken"], None)
        faults = self.state.faults
        if username is not None and faults.renewals_to_reject > 0:
            faults.renewals_to_reject -= 1
            faults.fired["renewal_rejected"] += 1
            username = None
        if username is None or username not in self.state.users:
            return error(401, 1, 3, "invalid or expired refresh token")
        return Answer(200, self.state._issue(username))

    async def user_current(self, request: web.Request, body: Any) -> Answer:
        user = self.state._authorize(request)
        if isinstance(user, Answer):
            return user
        company = self.state.tree.companies.get(user.company_id)
        if company is None:
            return not_found(user.company_id)
        return Answer(
            200,
            {
                "id": user.id,
                "email": user.username,
                "company": {
                    "companyId": company["publicId"],
                    "name": company["name"],
                    "type": company["type"],
                },
            },
        )

    async def company_detail(self, request: web.Request, body: Any) -> Answer:
        user = self.state._authorize(request)
        if isinstance(user, Answer):
            return user
        if not (isinstance(body, dict) and isinstance(body.get("companyId"), str)):
            return bad_request("companyId is required")
        tree = self.state.tree
        company_id = body["companyId"]
        company = tree.companies.get(company_id)
        root = tree.companies.get(user.company_id)
        if company is None or root is None or company["type"] == HQ:
            return not_found(company_id)
        visible = tree.is_within(company_id, root["publicId"]) or tree.is_within(
            root["publicId"], company_id
        )
        if not visible:
            return not_found(company_id)
        ancestors = [ref(c) for c in tree.ancestors_of(company_id)]
        return Answer(200, {"company": company, "ancestors": ancestors})

    async def company_children(self, request: web.Request, body: Any) -> Answer:
        user = self.state._authorize(request)
        if isinstance(user, Answer):
            return user
        if not isinstance(body, dict) or not isinstance(body.get("companyId"), str):
            return bad_request("companyId is required")
        skip, take = body.get("skip"), body.get("take")
        if not is_int(skip) or skip < 0:
            return bad_request("skip must be an integer of at least 0")
        if not is_int(take) or not 1 <= take <= 100:
            return bad_request("take must be an integer from 1 to 100")
        company_id = body["companyId"]
        if not self.state.is_visible_parent(company_id, user):
            return not_found(company_id)
        self.state.children_asked[company_id] += 1
        if company_id in self.state.faults.endless:
            return Answer(200, self.state.endless_page(company_id, skip, take))
        listing = self.state.listing(company_id)
        return Answer(200, {"companies": listing[skip : skip + take], "totalCount": len(listing)})

    async def search_licenses(self, request: web.Request, body: Any) -> Answer:
        user = self.state._authorize(request)
        if isinstance(user, Answer):
            return user
        company_id = body.get("companyId") if isinstance(body, dict) else None
        visible = isinstance(company_id, str) and self.state.is_visible_parent(company_id, user)
        return Answer(*licenses_page(self.state.tree.licenses, visible, body))


def _describe_call(
    state: SimulatorState, endpoint: str, body: Any, request: web.Request
) -> tuple[SimulatorUser | None, Call]:
    """Who calls, and the call as faults are aimed at it."""
    user = state._user_of(request)
    if endpoint != "Company/Children" or not isinstance(body, dict):
        return user, Call(endpoint)
    parent_id, skip, take = body.get("companyId"), body.get("skip"), body.get("take")
    if not (
        isinstance(parent_id, str)
        and parent_id in state.tree.companies
        and is_int(skip)
        and is_int(take)
        and take > 0
    ):
        return user, Call(endpoint)
    last_page = skip + take >= len(state.listing(parent_id))
    completes_walk = False
    if user is not None and user.company_id in state.tree.companies:
        root_id = user.company_id
        if parent_id == root_id and skip == 0:
            state._walks[root_id] = Walk()  # a new walk starts at the root's first page
        if last_page and any(rule.target.end_of_walk for rule in state.faults.rules):
            completes_walk = state.tree.is_within(parent_id, root_id) and state._completes_walk(
                root_id, parent_id
            )
    return user, Call(endpoint, parent_id, last_page, completes_walk)


def _respond(answer: Answer) -> web.Response:
    return web.Response(
        status=answer.status,
        text=json.dumps(answer.payload, ensure_ascii=False),
        content_type="application/json",
        headers=answer.headers,
    )


def _malformed(rule: FaultRule, payload: Any) -> web.Response:
    body = rule.body
    if callable(body):
        body = json.dumps(body(json.loads(json.dumps(payload))), ensure_ascii=False)
    elif isinstance(body, dict | list):
        body = json.dumps(body, ensure_ascii=False)
    raw = body.encode() if isinstance(body, str) else body
    return web.Response(status=200, body=raw, content_type="application/json")


async def _stream_huge(
    request: web.Request, size: int, state: SimulatorState
) -> web.StreamResponse:
    """`{"padding": "xxx…"}` of `size` bytes, chunk by chunk, until done or hung up on."""
    head, tail = b'{"padding": "', b'"}'
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = b"x" * 65_536
    try:
        await response.write(head)
        state.bytes_streamed += len(head)
        left = size - len(head) - len(tail)
        while left > 0:
            piece = chunk[:left]
            await response.write(piece)
            state.bytes_streamed += len(piece)
            left -= len(piece)
        await response.write(tail)
        state.bytes_streamed += len(tail)
        await response.write_eof()
    except ConnectionError:  # the caller stopped reading and hung up
        pass
    return response


async def _read_body(request: web.Request) -> Any:
    if request.method != "POST":
        return None
    try:
        return json.loads(await request.read())
    except ValueError:
        return None


def _dispatcher(
    state: SimulatorState,
    endpoint: str,
    handler: Callable[[web.Request, Any], Any],
) -> Callable[[web.Request], Any]:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        state.calls[endpoint] += 1
        faults = state.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        body = await _read_body(request)
        user, call = _describe_call(state, endpoint, body, request)
        rule = faults.take(call, _BEFORE)
        if rule is not None:
            if rule.kind == "maintenance":
                return _respond(error(503, 99, 2, "the service is under maintenance"))
            if rule.kind == "rate_limit":
                limited = error(429, 98, 1, "too many requests")
                if rule.retry_after is not None:
                    seconds = rule.retry_after
                    limited.headers["Retry-After"] = (
                        str(int(seconds)) if float(seconds).is_integer() else str(seconds)
                    )
                return _respond(limited)
            if rule.kind == "server_error":
                return _respond(error(rule.status, 100, 1, "internal error"))
            if rule.kind == "drop":
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=500)
            if rule.kind == "huge":
                return await _stream_huge(request, rule.size, state)
            if rule.kind == "redirect":
                location = f"{rule.location}{request.path_qs}"
                return web.Response(status=rule.status, headers={"Location": location})
            await asyncio.sleep(rule.seconds)  # slow: then answer normally
        answer: Answer = await handler(request, body)
        if answer.status == 200:
            malformed = faults.take(call, _AFTER)
            if malformed is not None:
                return _malformed(malformed, answer.payload)
            if call.last_page and call.parent_id is not None and user is not None:
                state._walk_of(user.company_id).served.add(call.parent_id)
        return _respond(answer)

    return dispatch


def create_simulator_app(
    tree: UpstreamTree,
    users: Iterable[SimulatorUser] | None = None,
    faults: Faults | None = None,
) -> web.Application:
    """The simulator as an aiohttp application; its state is `app[SIMULATOR_STATE]`.

    Without `users`, the demo login (`demo@msp.example` / `demo`) sits on the account's company.
    """
    state = SimulatorState(tree, users, faults)
    handlers = _Handlers(state)
    app = web.Application()
    app[SIMULATOR_STATE] = state
    routes = (
        ("POST", "Token/Get", handlers.token_get),
        ("POST", "Token/Renew", handlers.token_renew),
        ("GET", "User/Current", handlers.user_current),
        ("POST", "Company/Detail", handlers.company_detail),
        ("POST", "Company/Children", handlers.company_children),
        ("POST", "Search/Licenses", handlers.search_licenses),
    )
    for method, endpoint, handler in routes:
        app.router.add_route(method, f"/api/{endpoint}", _dispatcher(state, endpoint, handler))
    return app


class Simulator:
    """Runs the simulator on a real port: `async with Simulator(tree) as sim: sim.url`."""

    def __init__(
        self,
        tree: UpstreamTree,
        *,
        users: Iterable[SimulatorUser] | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = create_simulator_app(tree, users, faults)
        self.state = self.app[SIMULATOR_STATE]
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def tree(self) -> UpstreamTree:
        return self.state.tree

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def calls(self) -> Counter[str]:
        return self.state.calls

    @property
    def children_asked(self) -> Counter[str]:
        return self.state.children_asked

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the simulator is not running")
        return f"http://{self.host}:{self.port}"

    def add_user(self, username: str, password: str, company_id: str) -> SimulatorUser:
        return self.state.add_user(username, password, company_id)

    async def start(self) -> None:
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve_simulator(host: str, port: int, companies: int, seed: int) -> None:
    """Serves a generated tree until cancelled (`msp-console simulate-upstream`)."""
    tree = UpstreamTree.generate(companies, seed)
    async with Simulator(tree, host=host, port=port) as sim:
        logger.info(
            "MSP Administrator simulator on %s: %d companies (seed %d), login %s / %s",
            sim.url,
            companies,
            seed,
            DEFAULT_USERNAME,
            DEFAULT_PASSWORD,
        )
        await asyncio.Event().wait()
