"""What a simulator serves and counts: its tree, users, tokens, faults, and the walks in
progress (which a fault can be aimed at the end of)."""

from __future__ import annotations

import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from aiohttp import web

from server.upstream.codes import ACTIVE, CUSTOMER, MSP
from server.upstream.simulator.company_tree import Company, UpstreamTree
from server.upstream.simulator.faults import Faults

DEFAULT_USERNAME = "demo@msp.example"
DEFAULT_PASSWORD = "demo"  # noqa: S105 - the simulator's documented demo login

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
class _AccessToken:
    username: str
    expires_at: float
    used: int = 0


@dataclass(slots=True)
class Walk:
    """Which parents' last pages a walk of one subtree has been served."""

    served: set[str] = field(default_factory=set)
    required: set[str] | None = None
    required_version: int = -1


@dataclass(slots=True)
class Answer:
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
        self._walks: dict[str, Walk] = {}
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

    def _authorize(self, request: web.Request) -> SimulatorUser | Answer:
        token = self._access.get(self._bearer(request) or "")
        user = self.users.get(token.username) if token else None
        if token is None or user is None:
            return error(401, 1, 2, "missing or invalid access token")
        limit = self.faults.token_calls
        if time.monotonic() >= token.expires_at or (limit is not None and token.used >= limit):
            return error(401, 2, 1, "access token expired")
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
        link = made_up(f"{top}/chain/{level + 1}", f"Chain MSP {level + 1}", MSP, parent_id)
        self._links[link["publicId"]] = (top, level + 1)
        return link

    def endless_page(self, parent_id: str, skip: int, take: int) -> dict[str, Any]:
        """A page of children that never end."""
        return {
            "companies": [
                made_up(f"{parent_id}/endless/{n}", f"Endless Customer {n}", CUSTOMER, parent_id)
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

    def _walk_of(self, root_id: str) -> Walk:
        return self._walks.setdefault(root_id, Walk())

    def _completes_walk(self, root_id: str, parent_id: str) -> bool:
        walk = self._walk_of(root_id)
        if walk.required is None or walk.required_version != self.tree.version:
            walk.required = {
                c["publicId"] for c in self.tree.subtree(root_id) if c["type"] != CUSTOMER
            }
            walk.required_version = self.tree.version
        return parent_id in walk.required and walk.required - walk.served <= {parent_id}


def error(status: int, code: int, sub_code: int, message: str) -> Answer:
    return Answer(status, {"code": code, "subCode": sub_code, "message": message})


def bad_request(message: str) -> Answer:
    return error(400, 3, 1, message)


def not_found(company_id: str) -> Answer:
    return error(404, 4, 1, f"company {company_id} not found")


def made_up(key: str, name: str, type: int, parent_id: str) -> Company:
    return {
        "publicId": str(uuid.uuid5(_MADE_UP_NAMESPACE, key)),
        "name": name,
        "type": type,
        "status": ACTIVE,
        "parentId": parent_id,
        "email": None,
        "customIdentifier": None,
    }


def ref(company: Company) -> dict[str, Any]:
    return {"publicId": company["publicId"], "name": company["name"], "type": company["type"]}


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
