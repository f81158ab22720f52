"""An MSP Administrator simulator: the upstream API over an in-memory tree, with faults on demand.

Tests drive it through three objects: the `UpstreamTree` (companies, and knobs that change them),
the `Faults` (what goes wrong, and when) and the counters of the `SimulatorState`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from server.upstream.license_book import licenses_page
from server.upstream.tree import ACTIVE, CUSTOMER, HQ, MSP, Company, UpstreamTree

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "ENDPOINTS",
    "INVALID_JSON",
    "SIMULATOR_STATE",
    "FaultRule",
    "Faults",
    "Simulator",
    "SimulatorState",
    "SimulatorUser",
    "UpstreamTree",
    "create_simulator_app",
    "serve_simulator",
]

logger = logging.getLogger(__name__)

DEFAULT_USERNAME = "demo@msp.example"
DEFAULT_PASSWORD = "demo"  # noqa: S105 - the simulator's documented demo login
ENDPOINTS = (
    "Token/Get",
    "Token/Renew",
    "User/Current",
    "Company/Detail",
    "Company/Children",
    "Search/Licenses",
)
INVALID_JSON = '{"companies": [{"publicId": '
"""The default malformed body: JSON cut short."""

_USER_NAMESPACE = uuid.UUID("8f4b7a52-3c1e-4d1a-9a57-6c0e2b1f9d30")
_MADE_UP_NAMESPACE = uuid.UUID("3b9d2c1e-7a4f-4e8b-9c6d-5f1a2e3b4c5d")
"""Of the ids of companies a fault makes up (endless children, deep chains)."""


@dataclass(slots=True)
class SimulatorUser:
    """A login of the simulated MSP Administrator, attached to one company."""

    username: str
    password: str
    company_id: str
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = str(uuid.uuid5(_USER_NAMESPACE, self.username))


@dataclass(slots=True)
class FaultRule:
    """One armed fault: fires on the next `times` matching calls, after letting `after` through.

    A call matches when it goes to `endpoint` (any when None), and, for Company/Children, when it
    asks the last page of `last_page_of`, or, with `end_of_walk`, the page that completes a walk of
    the caller's whole subtree (every non-customer company's last page asked). Calls a rule answers
    do not count as served, so a retried page keeps matching until `times` runs out.
    """

    kind: str
    times: int = 1
    endpoint: str | None = None
    after: int = 0
    last_page_of: str | None = None
    end_of_walk: bool = False
    retry_after: float | None = None
    status: int = 500
    seconds: float = 0.0
    body: Any = None
    size: int = 0
    location: str = ""


class Faults:
    """What goes wrong in the simulator. Every one-shot fault is counted in `fired` by kind."""

    def __init__(self) -> None:
        self.fired: Counter[str] = Counter()
        self._reset()

    def _reset(self) -> None:
        self.delay = 0.0
        """Seconds every call waits before it is answered."""
        self.token_lifetime = 3600
        """Seconds an access token lives (the `expiresIn` answered)."""
        self.token_calls: int | None = None
        """Calls an access token answers before it expires (None: unlimited)."""
        self.rules: list[FaultRule] = []
        self.renewals_to_reject = 0
        self.duplicates: list[tuple[str, str | None]] = []
        self.cycles: list[tuple[str, str]] = []
        self.wrong_parents: dict[str, str] = {}
        self.endless: dict[str, int] = {}
        self.chains: dict[str, int] = {}

    def _arm(self, rule: FaultRule) -> FaultRule:
        if rule.times < 1 or rule.after < 0:
            raise ValueError("a fault fires at least once, after zero or more calls")
        if rule.endpoint is not None and rule.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {rule.endpoint!r}; one of {ENDPOINTS}")
        if rule.last_page_of is not None or rule.end_of_walk:
            rule.endpoint = "Company/Children"
        self.rules.append(rule)
        return rule

    def maintenance(
        self,
        times: int = 1,
        *,
        endpoint: str | None = None,
        after: int = 0,
        last_page_of: str | None = None,
        end_of_walk: bool = False,
    ) -> FaultRule:
        """503 {"code": 99, "subCode": 2} on the next `times` matching calls."""
        return self._arm(
            FaultRule("maintenance", times, endpoint, after, last_page_of, end_of_walk)
        )

    def rate_limit(
        self,
        times: int = 1,
        *,
        retry_after: float | None = 0,
        endpoint: str | None = None,
        after: int = 0,
        last_page_of: str | None = None,
        end_of_walk: bool = False,
    ) -> FaultRule:
        """429 with `Retry-After: retry_after` (no header when None) on the next matching calls."""
        rule = FaultRule("rate_limit", times, endpoint, after, last_page_of, end_of_walk)
        rule.retry_after = retry_after
        return self._arm(rule)

    def server_error(
        self,
        times: int = 1,
        *,
        status: int = 500,
        endpoint: str | None = None,
        after: int = 0,
        last_page_of: str | None = None,
        end_of_walk: bool = False,
    ) -> FaultRule:
        """A generic 5xx on the next `times` matching calls."""
        rule = FaultRule("server_error", times, endpoint, after, last_page_of, end_of_walk)
        rule.status = status
        return self._arm(rule)

    def drop_connection(
        self,
        times: int = 1,
        *,
        endpoint: str | None = None,
        after: int = 0,
        last_page_of: str | None = None,
        end_of_walk: bool = False,
    ) -> FaultRule:
        """Closes the connection without an answer; `after=n-1` aims at the n-th call."""
        return self._arm(FaultRule("drop", times, endpoint, after, last_page_of, end_of_walk))

    def slow(
        self,
        seconds: float,
        times: int = 1,
        *,
        endpoint: str | None = None,
        after: int = 0,
        last_page_of: str | None = None,
        end_of_walk: bool = False,
    ) -> FaultRule:
        """Waits `seconds` before answering the next matching calls (to trip client timeouts)."""
        rule = FaultRule("slow", times, endpoint, after, last_page_of, end_of_walk)
        rule.seconds = seconds
        return self._arm(rule)

    def malformed_body(
        self,
        times: int = 1,
        *,
        body: str | bytes | Callable[[Any], Any] | dict[str, Any] | list[Any] = INVALID_JSON,
        endpoint: str | None = None,
        after: int = 0,
        last_page_of: str | None = None,
        end_of_walk: bool = False,
    ) -> FaultRule:
        """Answers 200 with a wrong body instead of the right one.

        `body` is sent as is when text or bytes, JSON-encoded when a dict or list, or, when
        callable, applied to the right answer (a fresh copy) to produce the JSON to send.
        """
        rule = FaultRule("malformed", times, endpoint, after, last_page_of, end_of_walk)
        rule.body = body
        return self._arm(rule)

    def huge_body(
        self,
        size: int,
        times: int = 1,
        *,
        endpoint: str | None = None,
        after: int = 0,
        last_page_of: str | None = None,
        end_of_walk: bool = False,
    ) -> FaultRule:
        """Answers 200 with a JSON object of `size` bytes, streamed without a Content-Length;
        `SimulatorState.bytes_streamed` counts what got out before the caller hung up."""
        rule = FaultRule("huge", times, endpoint, after, last_page_of, end_of_walk)
        rule.size = size
        return self._arm(rule)

    def redirect(
        self,
        location: str,
        times: int = 1,
        *,
        status: int = 307,
        endpoint: str | None = None,
        after: int = 0,
    ) -> FaultRule:
        """Answers `status` with `Location: <location><the path asked>` (307 keeps the method
        and the body, credentials included, for whoever follows it)."""
        rule = FaultRule("redirect", times, endpoint, after)
        rule.status, rule.location = status, location.rstrip("/")
        return self._arm(rule)

    def endless_children(self, company_id: str, total: int = 10**12) -> None:
        """The company's children never end: `totalCount` is `total` and every page is full of
        made-up customers."""
        self.endless[company_id] = total

    def deep_chain(self, company_id: str, levels: int) -> None:
        """Hangs a chain of `levels` made-up MSPs below the company, each the only child of
        the one above."""
        self.chains[company_id] = levels

    def expire_tokens_after(self, calls: int | None) -> None:
        """Access tokens expire after answering `calls` calls (401 code 2), forcing renewals."""
        self.token_calls = calls

    def reject_renewals(self, times: int = 1) -> None:
        """The next `times` Token/Renew calls answer 401, forcing a new login."""
        self.renewals_to_reject += times

    def duplicate_company(self, company_id: str, *, under: str | None = None) -> None:
        """Lists a company a second time, at the end of `under`'s children (its own parent's
        when None), with `parentId` set to match the listing."""
        self.duplicates.append((company_id, under))

    def cycle(self, parent_id: str, ancestor_id: str) -> None:
        """Lists `ancestor_id` as a child of `parent_id`, at the end of its children."""
        self.cycles.append((parent_id, ancestor_id))

    def wrong_parent(self, company_id: str, reported_parent_id: str) -> None:
        """The company says `reported_parent_id` is its parent when listed under its real one."""
        self.wrong_parents[company_id] = reported_parent_id

    @property
    def pending(self) -> int:
        """Calls the armed one-shot faults still have to fire on."""
        return sum(rule.times for rule in self.rules)

    def clear(self) -> None:
        """Removes every fault and restores the defaults; keeps `fired`."""
        self._reset()


@dataclass(slots=True)
class _AccessToken:
    username: str
    expires_at: float
    used: int = 0


@dataclass(slots=True)
class _Walk:
    """Which parents' last pages a walk of one subtree has been served."""

    served: set[str] = field(default_factory=set)
    required: set[str] | None = None
    required_version: int = -1


@dataclass(slots=True)
class _Call:
    endpoint: str
    user: SimulatorUser | None
    parent_id: str | None = None
    last_page: bool = False
    completes_walk: bool = False


@dataclass(slots=True)
class _Answer:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


class SimulatorState:
    """Everything a simulator app serves and counts."""

    def __init__(
        self,
        tree: UpstreamTree,
        users: Iterable[SimulatorUser] | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.tree = tree
        self.faults = faults or Faults()
        if users is None:
            users = [SimulatorUser(DEFAULT_USERNAME, DEFAULT_PASSWORD, tree.account_id)]
        self.users = {user.username: user for user in users}
        self.calls: Counter[str] = Counter()
        """Calls received per endpoint, faulted ones included."""
        self.children_asked: Counter[str] = Counter()
        """Company/Children calls answered per parent id."""
        self.issued_tokens: list[str] = []
        """Every access and refresh token handed out, to check none leaks."""
        self.bytes_streamed = 0
        """Bytes of huge bodies that got out before their callers hung up."""
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, str] = {}
        self._walks: dict[str, _Walk] = {}
        self._links: dict[str, tuple[str, int]] = {}  # chain link id -> (chain top, level)

    def add_user(self, username: str, password: str, company_id: str) -> SimulatorUser:
        """Adds a login attached to a company (e.g. a Distributor's, to test refused imports)."""
        self.tree.get(company_id)
        user = SimulatorUser(username, password, company_id)
        self.users[username] = user
        return user

    def reset_counters(self) -> None:
        self.calls.clear()
        self.children_asked.clear()

    # -- tokens -----------------------------------------------------------------------------

    def _issue(self, username: str) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        lifetime = self.faults.token_lifetime
        self._access[access] = _AccessToken(username, time.monotonic() + lifetime)
        self._refresh[refresh] = username
        self.issued_tokens += (access, refresh)
        return {"accessToken": access, "refreshToken": refresh, "expiresIn": lifetime}

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _user_of(self, request: web.Request) -> SimulatorUser | None:
        token = self._access.get(self._bearer(request) or "")
        return self.users.get(token.username) if token else None

    def _authorize(self, request: web.Request) -> SimulatorUser | _Answer:
        token = self._access.get(self._bearer(request) or "")
        user = self.users.get(token.username) if token else None
        if token is None or user is None:
            return _error(401, 1, 2, "missing or invalid access token")
        limit = self.faults.token_calls
        if time.monotonic() >= token.expires_at or (limit is not None and token.used >= limit):
            return _error(401, 2, 1, "access token expired")
        token.used += 1
        return user

    # -- walks ------------------------------------------------------------------------------

    def listing(self, parent_id: str) -> list[Company]:
        """The children of a parent as served, with the structural faults applied."""
        faults = self.faults
        link = self._next_link(parent_id)
        if parent_id in self._links:
            return [link] if link else []
        listing = self.tree.children_of(parent_id)
        if link is not None:
            listing = [*listing, link]
        if not (faults.wrong_parents or faults.duplicates or faults.cycles):
            return listing
        listing = [
            {**c, "parentId": faults.wrong_parents[c["publicId"]]}
            if c["publicId"] in faults.wrong_parents
            else c
            for c in listing
        ]
        for company_id, under in faults.duplicates:
            company = self.tree.companies.get(company_id)
            if company is not None and (under or company["parentId"]) == parent_id:
                listing.append({**company, "parentId": parent_id})
        for cycle_parent, ancestor_id in faults.cycles:
            if cycle_parent == parent_id and ancestor_id in self.tree.companies:
                listing.append({**self.tree.companies[ancestor_id], "parentId": parent_id})
        return listing

    def _next_link(self, parent_id: str) -> Company | None:
        """The link of a deep chain below a company (a chain's top or a link), if any."""
        top, level = self._links.get(parent_id, (parent_id, 0))
        if level >= self.faults.chains.get(top, 0):
            return None
        link = _made_up(f"{top}/chain/{level + 1}", f"Chain MSP {level + 1}", MSP, parent_id)
        self._links[link["publicId"]] = (top, level + 1)
        return link

    def endless_page(self, parent_id: str, skip: int, take: int) -> dict[str, Any]:
        """A page of children that never end."""
        return {
            "companies": [
                _made_up(f"{parent_id}/endless/{n}", f"Endless Customer {n}", CUSTOMER, parent_id)
                for n in range(skip, skip + take)
            ],
            "totalCount": self.faults.endless[parent_id],
        }

    def is_visible_parent(self, company_id: str, user: SimulatorUser) -> bool:
        """Whether a user may list the children of a company (a chain link: of its top)."""
        tree = self.tree
        company_id = self._links.get(company_id, (company_id, 0))[0]
        return (
            company_id in tree.companies
            and user.company_id in tree.companies
            and tree.is_within(company_id, user.company_id)
        )

    def _walk_of(self, root_id: str) -> _Walk:
        return self._walks.setdefault(root_id, _Walk())

    def _completes_walk(self, root_id: str, parent_id: str) -> bool:
        walk = self._walk_of(root_id)
        if walk.required is None or walk.required_version != self.tree.version:
            walk.required = {
                c["publicId"] for c in self.tree.subtree(root_id) if c["type"] != CUSTOMER
            }
            walk.required_version = self.tree.version
        return parent_id in walk.required and walk.required - walk.served <= {parent_id}

    # -- faults -----------------------------------------------------------------------------

    def _take_rule(self, call: _Call, kinds: frozenset[str]) -> FaultRule | None:
        for rule in self.faults.rules:
            if rule.kind not in kinds or not _matches(rule, call):
                continue
            if rule.after > 0:
                rule.after -= 1
                continue
            rule.times -= 1
            if rule.times == 0:
                self.faults.rules.remove(rule)
            self.faults.fired[rule.kind] += 1
            return rule
        return None


def _matches(rule: FaultRule, call: _Call) -> bool:
    if rule.endpoint is not None and rule.endpoint != call.endpoint:
        return False
    if rule.last_page_of is not None and not (
        call.parent_id == rule.last_page_of and call.last_page
    ):
        return False
    return not rule.end_of_walk or call.completes_walk


def _error(status: int, code: int, sub_code: int, message: str) -> _Answer:
    return _Answer(status, {"code": code, "subCode": sub_code, "message": message})


def _bad_request(message: str) -> _Answer:
    return _error(400, 3, 1, message)


def _not_found(company_id: str) -> _Answer:
    return _error(404, 4, 1, f"company {company_id} not found")


def _made_up(key: str, name: str, type: int, parent_id: str) -> Company:
    return {
        "publicId": str(uuid.uuid5(_MADE_UP_NAMESPACE, key)),
        "name": name,
        "type": type,
        "status": ACTIVE,
        "parentId": parent_id,
        "email": None,
        "customIdentifier": None,
    }


def _ref(company: Company) -> dict[str, Any]:
    return {"publicId": company["publicId"], "name": company["name"], "type": company["type"]}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


SIMULATOR_STATE = web.AppKey("simulator_state", SimulatorState)

_BEFORE = frozenset(
    {"maintenance", "rate_limit", "server_error", "drop", "slow", "huge", "redirect"}
)
_AFTER = frozenset({"malformed"})


class _Handlers:
    """The six endpoints. Each returns an `_Answer`; `dispatch` wraps them with the faults."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def token_get(self, request: web.Request, body: Any) -> _Answer:
        if not (
            isinstance(body, dict)
            and isinstance(body.get("username"), str)
            and isinstance(body.get("password"), str)
        ):
            return _bad_request("username and password are required")
        user = self.state.users.get(body["username"])
        if user is None or not secrets.compare_digest(user.password, body["password"]):
            return _error(401, 1, 1, "invalid username or password")
        return _Answer(200, self.state._issue(user.username))

    async def token_renew(self, request: web.Request, body: Any) -> _Answer:
        if not (isinstance(body, dict) and isinstance(body.get("refreshToken"), str)):
            return _bad_request("refreshToken is required")
        username = self.state._refresh.pop(body["refreshToken"], None)
        faults = self.state.faults
        if username is not None and faults.renewals_to_reject > 0:
            faults.renewals_to_reject -= 1
            faults.fired["renewal_rejected"] += 1
            username = None
        if username is None or username not in self.state.users:
            return _error(401, 1, 3, "invalid or expired refresh token")
        return _Answer(200, self.state._issue(username))

    async def user_current(self, request: web.Request, body: Any) -> _Answer:
        user = self.state._authorize(request)
        if isinstance(user, _Answer):
            return user
        company = self.state.tree.companies.get(user.company_id)
        if company is None:
            return _not_found(user.company_id)
        return _Answer(
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

    async def company_detail(self, request: web.Request, body: Any) -> _Answer:
        user = self.state._authorize(request)
        if isinstance(user, _Answer):
            return user
        if not (isinstance(body, dict) and isinstance(body.get("companyId"), str)):
            return _bad_request("companyId is required")
        tree = self.state.tree
        company_id = body["companyId"]
        company = tree.companies.get(company_id)
        root = tree.companies.get(user.company_id)
        if company is None or root is None or company["type"] == HQ:
            return _not_found(company_id)
        visible = tree.is_within(company_id, root["publicId"]) or tree.is_within(
            root["publicId"], company_id
        )
        if not visible:
            return _not_found(company_id)
        ancestors = [_ref(c) for c in tree.ancestors_of(company_id)]
        return _Answer(200, {"company": company, "ancestors": ancestors})

    async def company_children(self, request: web.Request, body: Any) -> _Answer:
        user = self.state._authorize(request)
        if isinstance(user, _Answer):
            return user
        if not isinstance(body, dict) or not isinstance(body.get("companyId"), str):
            return _bad_request("companyId is required")
        skip, take = body.get("skip"), body.get("take")
        if not _is_int(skip) or skip < 0:
            return _bad_request("skip must be an integer of at least 0")
        if not _is_int(take) or not 1 <= take <= 100:
            return _bad_request("take must be an integer from 1 to 100")
        company_id = body["companyId"]
        if not self.state.is_visible_parent(company_id, user):
            return _not_found(company_id)
        self.state.children_asked[company_id] += 1
        if company_id in self.state.faults.endless:
            return _Answer(200, self.state.endless_page(company_id, skip, take))
        listing = self.state.listing(company_id)
        return _Answer(200, {"companies": listing[skip : skip + take], "totalCount": len(listing)})

    async def search_licenses(self, request: web.Request, body: Any) -> _Answer:
        user = self.state._authorize(request)
        if isinstance(user, _Answer):
            return user
        company_id = body.get("companyId") if isinstance(body, dict) else None
        visible = isinstance(company_id, str) and self.state.is_visible_parent(company_id, user)
        return _Answer(*licenses_page(self.state.tree.licenses, visible, body))


def _describe_call(state: SimulatorState, endpoint: str, body: Any, request: web.Request) -> _Call:
    call = _Call(endpoint, state._user_of(request))
    if endpoint != "Company/Children" or not isinstance(body, dict):
        return call
    parent_id, skip, take = body.get("companyId"), body.get("skip"), body.get("take")
    if not (
        isinstance(parent_id, str)
        and parent_id in state.tree.companies
        and _is_int(skip)
        and _is_int(take)
        and take > 0
    ):
        return call
    call.parent_id = parent_id
    call.last_page = skip + take >= len(state.listing(parent_id))
    if call.user is not None and call.user.company_id in state.tree.companies:
        root_id = call.user.company_id
        if parent_id == root_id and skip == 0:
            state._walks[root_id] = _Walk()  # a new walk starts at the root's first page
        if call.last_page and any(rule.end_of_walk for rule in state.faults.rules):
            call.completes_walk = state.tree.is_within(
                parent_id, root_id
            ) and state._completes_walk(root_id, parent_id)
    return call


def _respond(answer: _Answer) -> web.Response:
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
        call = _describe_call(state, endpoint, body, request)
        rule = state._take_rule(call, _BEFORE)
        if rule is not None:
            if rule.kind == "maintenance":
                return _respond(_error(503, 99, 2, "the service is under maintenance"))
            if rule.kind == "rate_limit":
                answer = _error(429, 98, 1, "too many requests")
                if rule.retry_after is not None:
                    seconds = rule.retry_after
                    answer.headers["Retry-After"] = (
                        str(int(seconds)) if float(seconds).is_integer() else str(seconds)
                    )
                return _respond(answer)
            if rule.kind == "server_error":
                return _respond(_error(rule.status, 100, 1, "internal error"))
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
        answer: _Answer = await handler(request, body)
        if answer.status == 200:
            malformed = state._take_rule(call, _AFTER)
            if malformed is not None:
                return _malformed(malformed, answer.payload)
            if call.last_page and call.parent_id is not None and call.user is not None:
                state._walk_of(call.user.company_id).served.add(call.parent_id)
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
