"""The MSP Administrator client: authenticated, patient with a failing upstream, strict on bodies.

Speaks the API of `upstream-api.md`. Every body is validated; anything off the documented shape
fails with an `UpstreamProtocolError` that names the endpoint and the field. Secrets (the password,
access and refresh tokens) never reach a log line or an error message, and neither does what the
upstream wrote in a body. A hostile upstream is bounded: redirects are never followed, and limits
on the size of an answer, the companies and depth of the tree and the time spent fail the call
with an `UpstreamLimitExceeded` instead of letting it grow without end.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

__all__ = [
    "MspAdministratorClient",
    "ProgressCallback",
    "UpstreamAuthError",
    "UpstreamCompany",
    "UpstreamCompanyRef",
    "UpstreamError",
    "UpstreamLimitExceeded",
    "UpstreamNotFound",
    "UpstreamProtocolError",
    "UpstreamSnapshot",
    "UpstreamStats",
    "UpstreamTreeError",
    "UpstreamUnavailable",
    "UpstreamUnreachable",
    "UpstreamUser",
]

logger = logging.getLogger(__name__)

HQ: Final = 1001
CUSTOMER: Final = 1007
COMPANY_TYPES: Final = frozenset(range(1002, 1008))
"""Types a company can have; ESET HQ (1001) is not a company."""
STATUSES: Final = frozenset({1, 2, 3})

ProgressCallback = Callable[[int], Awaitable[None] | None]


# -- errors -----------------------------------------------------------------------------------


class UpstreamError(Exception):
    """Something went wrong talking to the MSP Administrator."""


class UpstreamAuthError(UpstreamError):
    """The MSP Administrator refused the credentials (or every token it handed out)."""


class UpstreamProtocolError(UpstreamError):
    """An answer was not what the API documents: status, body shape or field types."""


class UpstreamTreeError(UpstreamProtocolError):
    """The company tree is inconsistent: a company twice, a cycle, a child with another parent."""


class UpstreamNotFound(UpstreamError):
    """The MSP Administrator does not know (or does not show us) the company asked for."""


class UpstreamUnavailable(UpstreamError):
    """The MSP Administrator stayed unreachable, throttled or failing beyond the retry budget."""


class UpstreamUnreachable(UpstreamUnavailable):
    """No answer at all: refused, reset, timed out or not resolved, which the message never tells
    apart (telling them apart would map ports and hosts for whoever chooses the URL)."""


class UpstreamLimitExceeded(UpstreamError):
    """An answer or the tree went beyond a limit of the client; `limit` is the argument's name."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamCompanyRef:
    """A company named in passing: a user's company, an ancestor."""

    public_id: str
    name: str
    type: int


@dataclass(frozen=True, slots=True)
class UpstreamCompany:
    """A company as the MSP Administrator describes it."""

    public_id: str
    name: str
    type: int
    status: int
    parent_id: str
    email: str | None
    custom_identifier: str | None


@dataclass(frozen=True, slots=True)
class UpstreamUser:
    """The account the client is logged in as; its company is the root of a sync."""

    id: str
    email: str
    company: UpstreamCompanyRef


@dataclass(frozen=True, slots=True)
class UpstreamSnapshot:
    """The whole tree under an account's company, as one consistent read."""

    root: UpstreamCompany
    ancestors: tuple[UpstreamCompanyRef, ...]
    """The companies above the root, top first, HQ excluded."""
    descendants: tuple[UpstreamCompany, ...]
    """Everything below the root, depth first, parents before children, siblings in the
    upstream's order."""

    @property
    def companies(self) -> tuple[UpstreamCompany, ...]:
        """The root followed by its descendants."""
        return (self.root, *self.descendants)


@dataclass(slots=True)
class UpstreamStats:
    """What a client has done so far.

    `wait_seconds` is the sum of request latencies (parallel requests add up); `busy_seconds`
    is the wall-clock time during which at least one request was in flight.
    """

    calls: int = 0
    calls_by_endpoint: Counter[str] = field(default_factory=Counter)
    logins: int = 0
    renewals: int = 0
    retries: int = 0
    wait_seconds: float = 0.0
    busy_seconds: float = 0.0
    backoff_seconds: float = 0.0


@dataclass(slots=True)
class _Tokens:
    access: str = field(repr=False)
    refresh: str = field(repr=False)
    renew_at: float
    served: bool = False


# -- validation -------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


class _Body:
    """Reads one JSON body, naming the endpoint and the field path in every complaint."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def fail(self, where: str, problem: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(
            f"MSP Administrator {self.endpoint} answered an invalid body: {where} {problem}"
        )

    def object(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be an object, got {_kind(value)}")
        return value

    def array(self, obj: dict[str, Any], key: str, where: str) -> list[Any]:
        value = self.member(obj, key, where)
        if not isinstance(value, list):
            raise self.fail(f"{where}{key}", f"must be an array, got {_kind(value)}")
        return value

    def string(self, obj: dict[str, Any], key: str, where: str, *, empty: bool = False) -> str:
        value = self.member(obj, key, where)
        if not isinstance(value, str):
            raise self.fail(f"{where}{key}", f"must be a string, got {_kind(value)}")
        if not empty and not value:
            raise self.fail(f"{where}{key}", "must not be empty")
        return value

    def optional_string(self, obj: dict[str, Any], key: str, where: str) -> str | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{where}{key}", f"must be a string or null, got {_kind(value)}")
        return value

    def integer(
        self, obj: dict[str, Any], key: str, where: str, *, allowed: frozenset[int] | None = None
    ) -> int:
        value = self.member(obj, key, where)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"{where}{key}", f"must be an integer, got {_kind(value)}")
        if allowed is not None and value not in allowed:
            raise self.fail(f"{where}{key}", f"has an unknown value {value}")
        return value

    def member(self, obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise self.fail(f"{where}{key}", "is missing")
        return obj[key]

    def company(self, value: Any, where: str) -> UpstreamCompany:
        obj = self.object(value, where or "the body")
        prefix = f"{where}." if where else ""
        return UpstreamCompany(
            public_id=self.string(obj, "publicId", prefix),
            name=self.string(obj, "name", prefix),
            type=self.integer(obj, "type", prefix, allowed=COMPANY_TYPES),
            status=self.integer(obj, "status", prefix, allowed=STATUSES),
            parent_id=self.string(obj, "parentId", prefix),
            email=self.optional_string(obj, "email", prefix),
            custom_identifier=self.optional_string(obj, "customIdentifier", prefix),
        )

    def company_ref(self, value: Any, where: str, id_key: str = "publicId") -> UpstreamCompanyRef:
        obj = self.object(value, where)
        prefix = f"{where}."
        return UpstreamCompanyRef(
            public_id=self.string(obj, id_key, prefix),
            name=self.string(obj, "name", prefix),
            type=self.integer(obj, "type", prefix, allowed=COMPANY_TYPES | {HQ}),
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta seconds or an HTTP date), None if absent."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_code(body: bytes) -> Any:
    try:
        return json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None


_MAX_STRIKES: Final = 2
_READ_CHUNK: Final = 65_536
_TRANSIENT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class MspAdministratorClient:
    """A client of one MSP Administrator account: `async with MspAdministratorClient(...) as c`.

    Logs in on first use, renews expiring tokens (proactively, and on 401 code 2), backs off on
    503/429 within `max_backoff_total` seconds and retries other failures `max_retries` times.
    The limits (None: none) bound what a hostile upstream can make it do: `max_body_bytes` per
    answer, `max_companies` in a tree (the root and its descendants), `max_depth` levels of it
    (its ancestors included), and `max_seconds` from when the client opens to its last call.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_backoff_total: float = 300.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        page_size: int = 100,
        concurrency: int = 8,
        progress_interval: float = 0.25,
        max_body_bytes: int | None = None,
        max_companies: int | None = None,
        max_depth: int | None = None,
        max_seconds: float | None = None,
    ) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError("page_size must be from 1 to 100")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_backoff_total = max_backoff_total
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.page_size = page_size
        self.concurrency = concurrency
        self.progress_interval = progress_interval
        self.max_body_bytes = max_body_bytes
        self.max_companies = max_companies
        self.max_depth = max_depth
        self.max_seconds = max_seconds
        self.stats = UpstreamStats()
        self._session: aiohttp.ClientSession | None = None
        self._tokens: _Tokens | None = None
        self._auth_lock = asyncio.Lock()
        self._jitter = random.Random()
        self._in_flight = 0
        self._busy_since = 0.0
        self._deadline: float | None = None

    @property
    def host(self) -> str:
        """The host the client calls, as error messages name it."""
        return urlsplit(self.base_url).hostname or self.base_url

    def __repr__(self) -> str:
        return f"MspAdministratorClient({self.base_url!r}, {self.username!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> MspAdministratorClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/json"},
            )
            if self.max_seconds is not None:
                self._deadline = time.monotonic() + self.max_seconds
        return self._session

    async def close(self) -> None:
        """Closes the HTTP session and forgets the tokens (a later call starts afresh)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._tokens = None
        self._deadline = None

    # -- the API ------------------------------------------------------------------------------

    async def current_user(self) -> UpstreamUser:
        """The logged-in user and its company (the root of a sync)."""
        endpoint = "User/Current"
        data = await self._call(endpoint, method="GET")
        body = _Body(endpoint)
        obj = body.object(data, "the body")
        return UpstreamUser(
            id=body.string(obj, "id", ""),
            email=body.string(obj, "email", ""),
            company=body.company_ref(body.member(obj, "company", ""), "company", "companyId"),
        )

    async def company_detail(
        self, company_id: str
    ) -> tuple[UpstreamCompany, list[UpstreamCompanyRef]]:
        """A company and its ancestors, top first, HQ excluded."""
        endpoint = "Company/Detail"
        data = await self._call(endpoint, {"companyId": company_id}, subject=company_id)
        body = _Body(endpoint)
        obj = body.object(data, "the body")
        company = body.company(body.member(obj, "company", ""), "company")
        if company.public_id != company_id:
            raise body.fail("company.publicId", f"is {company.public_id}, not {company_id}")
        ancestors = [
            body.company_ref(item, f"ancestors[{index}]")
            for index, item in enumerate(body.array(obj, "ancestors", ""))
        ]
        return company, [ref for ref in ancestors if ref.type != HQ]

    async def children(
        self, company_id: str, *, at_most: int | None = None
    ) -> list[UpstreamCompany]:
        """Every child of a company, page by page, checked to belong to it and appear once;
        a `totalCount` above `at_most` fails at its first page."""
        endpoint = "Company/Children"
        body = _Body(endpoint)
        companies: list[UpstreamCompany] = []
        seen: set[str] = set()
        total: int | None = None
        while total is None or len(companies) < total:
            payload = {"companyId": company_id, "skip": len(companies), "take": self.page_size}
            data = await self._call(endpoint, payload, subject=company_id)
            obj = body.object(data, "the body")
            items = body.array(obj, "companies", "")
            count = body.integer(obj, "totalCount", "")
            if count < 0:
                raise body.fail("totalCount", f"is negative ({count})")
            if total is not None and count != total:
                raise UpstreamTreeError(
                    f"MSP Administrator {endpoint}: the children of {company_id} changed while "
                    f"paging (totalCount {total}, then {count})"
                )
            total = count
            if at_most is not None and total > at_most:
                raise self._too_many_companies(
                    f"{company_id} counts {total} children, with room for {at_most} more"
                )
            if len(items) > self.page_size:
                raise body.fail("companies", f"holds {len(items)}, more than take={self.page_size}")
            if not items and len(companies) < total:
                raise body.fail(
                    "companies", f"is empty at skip={len(companies)} of totalCount={total}"
                )
            for index, item in enumerate(items):
                child = body.company(item, f"companies[{index}]")
                if child.parent_id != company_id:
                    raise UpstreamTreeError(
                        f"MSP Administrator {endpoint}: company {child.public_id} is listed under "
                        f"{company_id} but names {child.parent_id} as its parent"
                    )
                if child.public_id in seen:
                    raise UpstreamTreeError(
                        f"MSP Administrator {endpoint}: company {child.public_id} is listed twice "
                        f"under {company_id}"
                    )
                seen.add(child.public_id)
                companies.append(child)
            if len(companies) > total:
                raise body.fail("companies", f"hold more than totalCount={total}")
        return companies

    async def fetch_tree(
        self, root_id: str, on_progress: ProgressCallback | None = None
    ) -> UpstreamSnapshot:
        """Reads the whole tree under `root_id`, `concurrency` walks at a time, and checks it.

        Customers' children are never asked. Fails with `UpstreamTreeError` naming the company
        when one appears twice, forms a cycle or names another parent, and with
        `UpstreamLimitExceeded` as soon as the tree is larger or deeper than the limits.
        """
        root, ancestors = await self.company_detail(root_id)
        above = {ref.public_id for ref in ancestors}
        level_of = {root_id: len(ancestors) + 1}
        self._check_level(root_id, level_of[root_id], len(ancestors))
        parent_of: dict[str, str] = {}
        children_of: dict[str, list[UpstreamCompany]] = {}
        queue: asyncio.Queue[str] = asyncio.Queue()
        progress = _Progress(on_progress, self.progress_interval)
        if root.type != CUSTOMER:
            queue.put_nowait(root_id)

        def admit(child: UpstreamCompany, parent_id: str) -> None:
            child_id = child.public_id
            if child_id in above or child_id == root_id:
                raise UpstreamTreeError(
                    f"MSP Administrator company tree has a cycle: {child_id}, above {parent_id}, "
                    f"is listed as its child"
                )
            if child_id in parent_of:
                chain = parent_id
                while chain != root_id:
                    if chain == child_id:
                        raise UpstreamTreeError(
                            f"MSP Administrator company tree has a cycle: {child_id}, above "
                            f"{parent_id}, is listed as its child"
                        )
                    chain = parent_of[chain]
                raise UpstreamTreeError(
                    f"MSP Administrator company tree lists company {child_id} twice: under "
                    f"{parent_of[child_id]} and under {parent_id}"
                )
            parent_of[child_id] = parent_id
            if self.max_companies is not None and len(parent_of) + 1 > self.max_companies:
                raise self._too_many_companies(f"company {child_id} is beyond it")
            level_of[child_id] = level_of[parent_id] + 1
            self._check_level(child_id, level_of[child_id], len(ancestors))

        async def walk() -> None:
            while True:
                parent_id = await queue.get()
                try:
                    room = None
                    if self.max_companies is not None:
                        room = self.max_companies - len(parent_of) - 1
                    children = await self.children(parent_id, at_most=room)
                    for child in children:
                        admit(child, parent_id)
                        if child.type != CUSTOMER:
                            queue.put_nowait(child.public_id)
                    children_of[parent_id] = children
                    await progress.report(len(parent_of) + 1)
                finally:
                    queue.task_done()

        try:
            async with asyncio.TaskGroup() as group:
                walkers = [group.create_task(walk()) for _ in range(self.concurrency)]
                await queue.join()
                for walker in walkers:
                    walker.cancel()
        except BaseExceptionGroup as failures:
            raise _first(failures) from None
        await progress.report(len(parent_of) + 1, final=True)

        descendants: list[UpstreamCompany] = []
        stack = list(reversed(children_of.get(root_id, [])))
        while stack:
            company = stack.pop()
            descendants.append(company)
            stack.extend(reversed(children_of.get(company.public_id, [])))
        return UpstreamSnapshot(root, tuple(ancestors), tuple(descendants))

    def _too_many_companies(self, where: str) -> UpstreamLimitExceeded:
        return UpstreamLimitExceeded(
            f"MSP Administrator company tree holds more than {self.max_companies} companies, "
            f"the limit of a sync ({where})",
            "max_companies",
        )

    def _check_level(self, company_id: str, level: int, above: int) -> None:
        if self.max_depth is not None and level > self.max_depth:
            raise UpstreamLimitExceeded(
                f"MSP Administrator company tree is deeper than the limit of {self.max_depth} "
                f"levels (counting the {above} companies above the account): company "
                f"{company_id} is on level {level}",
                "max_depth",
            )

    # -- transport ----------------------------------------------------------------------------

    async def _call(
        self,
        endpoint: str,
        payload: dict[str, Any] | None = None,
        *,
        method: str = "POST",
        subject: str | None = None,
    ) -> Any:
        """One authenticated call, repeated after renewing (or logging in again) on a 401.

        An expired token (401 code 2) is renewed and the call repeated; parallel calls can use
        up a short-lived token before a given call gets its turn, so only a token refused before
        serving any call counts against the call. Any other 401 is answered by logging in again,
        once.
        """
        strikes = 0
        refusals = 0
        while True:
            tokens = await self._current_tokens()
            status, _, body = await self._send(endpoint, method, payload, tokens.access)
            if status != 401:
                tokens.served = True
                return self._json(endpoint, status, body, subject)
            expired = _error_code(body) == 2
            if not expired:
                refusals += 1
            elif not tokens.served:
                strikes += 1
            if refusals > 1 or strikes > _MAX_STRIKES:
                raise UpstreamAuthError(
                    f"MSP Administrator {endpoint} keeps refusing freshly issued access tokens"
                )
            await self._recover(tokens, expired=expired)

    def _json(self, endpoint: str, status: int, body: bytes, subject: str | None) -> Any:
        """The JSON of a 200 answer; any other status as an error that never quotes the body."""
        if status == 200:
            try:
                return json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise UpstreamProtocolError(
                    f"MSP Administrator {endpoint} answered a body that is not JSON"
                ) from None
        if status == 404:
            what = f"company {subject}" if subject else "the account"
            raise UpstreamNotFound(f"MSP Administrator {endpoint}: {what} not found")
        if status == 403:
            raise UpstreamAuthError(f"MSP Administrator {endpoint}: access denied")
        if status == 400:
            raise UpstreamProtocolError(
                f"MSP Administrator {endpoint} rejected the request as invalid"
            )
        raise UpstreamProtocolError(f"MSP Administrator {endpoint} answered status {status}")

    async def _send(
        self, endpoint: str, method: str, payload: dict[str, Any] | None, access: str | None
    ) -> tuple[int, str | None, bytes]:
        """One request with the retry policy; returns (status, Retry-After, body) of the answer
        that ended it (anything but 429 and 5xx). Redirects are answers, never followed."""
        session = self._open()
        url = f"{self.base_url}/api/{endpoint}"
        headers = {"Authorization": f"Bearer {access}"} if access else {}
        failures = 0
        problem = ""
        throttled = 0
        throttled_since: float | None = None
        while True:
            left = self._time_left(endpoint)
            timeout = aiohttp.ClientTimeout(
                total=self.timeout if left is None else min(self.timeout, left)
            )
            started = time.monotonic()
            self.stats.calls += 1
            self.stats.calls_by_endpoint[endpoint] += 1
            if self._in_flight == 0:
                self._busy_since = started
            self._in_flight += 1
            try:
                async with session.request(
                    method,
                    url,
                    json=payload,
                    headers=headers,
                    allow_redirects=False,
                    timeout=timeout,
                ) as answer:
                    status, retry_after = answer.status, answer.headers.get("Retry-After")
                    body = await self._read(endpoint, answer)
            except _TRANSIENT as exc:
                problem = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
                status, retry_after, body = 0, None, b""
            except aiohttp.ClientResponseError:  # what answered does not speak HTTP
                raise UpstreamProtocolError(
                    f"MSP Administrator {endpoint} answered something that is not HTTP"
                ) from None
            finally:
                ended = time.monotonic()
                self.stats.wait_seconds += ended - started
                self._in_flight -= 1
                if self._in_flight == 0:
                    self.stats.busy_seconds += ended - self._busy_since
            if status in (429, 503):
                throttled += 1
                throttled_since = throttled_since or started
                delay = _retry_after(retry_after)
                if delay is None:
                    delay = self._backoff(throttled)
                spent = time.monotonic() - throttled_since
                if spent + delay > self.max_backoff_total:
                    raise UpstreamUnavailable(
                        f"MSP Administrator {endpoint} still answers {status} "
                        f"({'rate limited' if status == 429 else 'unavailable'}) after "
                        f"{spent:.1f}s of {throttled} attempts; giving up"
                    )
                what = f"answered {status}"
            elif status == 0 or status >= 500:
                failures += 1
                what = problem if status == 0 else f"answered {status}"
                self._time_left(endpoint)  # a timeout cut short by the deadline is the deadline's
                if failures > self.max_retries and status == 0:
                    raise UpstreamUnreachable(
                        f"could not reach the MSP Administrator at {self.host} "
                        f"({endpoint}, {failures} attempts)"
                    )
                if failures > self.max_retries:
                    raise UpstreamUnavailable(
                        f"MSP Administrator {endpoint} {what}; giving up after {failures} attempts"
                    )
                delay = self._backoff(failures)
            elif 300 <= status < 400:
                raise UpstreamProtocolError(
                    f"MSP Administrator {endpoint} answered a redirect ({status}), which the API "
                    "never does; it was not followed"
                )
            else:
                return status, retry_after, body
            left = self._time_left(endpoint)
            if left is not None and delay >= left:
                raise self._out_of_time(endpoint)
            self.stats.retries += 1
            logger.warning("MSP Administrator %s %s; retrying in %.2fs", endpoint, what, delay)
            self.stats.backoff_seconds += delay
            await asyncio.sleep(delay)

    async def _read(self, endpoint: str, answer: aiohttp.ClientResponse) -> bytes:
        """The body of an answer, of which no more than `max_body_bytes` is ever read."""
        limit = self.max_body_bytes
        if limit is None:
            return await answer.read()
        body = bytearray()
        while chunk := await answer.content.read(min(_READ_CHUNK, limit + 1 - len(body))):
            body += chunk
            if len(body) > limit:
                raise UpstreamLimitExceeded(
                    f"MSP Administrator {endpoint} answered more than {limit} bytes, the limit "
                    "of an answer",
                    "max_body_bytes",
                )
        return bytes(body)

    def _time_left(self, endpoint: str) -> float | None:
        """Seconds before the deadline (None without one); past it, the limit's error."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._out_of_time(endpoint)
        return left

    def _out_of_time(self, endpoint: str) -> UpstreamLimitExceeded:
        return UpstreamLimitExceeded(
            f"MSP Administrator calls took longer than the limit of {self.max_seconds:g} s "
            f"(at {endpoint})",
            "max_seconds",
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + self._jitter.uniform(0, ceiling / 2)

    # -- tokens -------------------------------------------------------------------------------

    async def _current_tokens(self) -> _Tokens:
        async with self._auth_lock:
            if self._tokens is None:
                await self._login()
            elif time.monotonic() >= self._tokens.renew_at:
                await self._renew()
            assert self._tokens is not None
            return self._tokens

    async def _recover(self, rejected: _Tokens, *, expired: bool) -> None:
        """After a 401: renew (expired token) or log in again, unless another call already did."""
        async with self._auth_lock:
            if self._tokens is not rejected:
                return
            if expired:
                await self._renew()
            else:
                await self._login()

    async def _login(self) -> None:
        endpoint = "Token/Get"
        payload = {"username": self.username, "password": self._password}
        status, _, body = await self._send(endpoint, "POST", payload, None)
        if status == 401:
            raise UpstreamAuthError(
                f"MSP Administrator refused the credentials of {self.username!r}"
            )
        self._tokens = self._read_tokens(endpoint, status, body)
        self.stats.logins += 1

    async def _renew(self) -> None:
        if self._tokens is None:
            await self._login()
            return
        endpoint = "Token/Renew"
        payload = {"refreshToken": self._tokens.refresh}
        status, _, body = await self._send(endpoint, "POST", payload, None)
        if status == 401:
            logger.info("MSP Administrator refused the refresh token; logging in again")
            self._tokens = None
            await self._login()
            return
        self._tokens = self._read_tokens(endpoint, status, body)
        self.stats.renewals += 1

    def _read_tokens(self, endpoint: str, status: int, body: bytes) -> _Tokens:
        # Never echo these bodies: they carry tokens.
        if status != 200:
            raise UpstreamProtocolError(f"MSP Administrator {endpoint} answered status {status}")
        data = self._json(endpoint, status, body, None)
        reader = _Body(endpoint)
        obj = reader.object(data, "the body")
        access = reader.string(obj, "accessToken", "")
        refresh = reader.string(obj, "refreshToken", "")
        expires_in = reader.integer(obj, "expiresIn", "")
        if expires_in <= 0:
            raise reader.fail("expiresIn", "must be positive")
        # Renew a little before the upstream would refuse the token.
        margin = min(5.0, expires_in / 10)
        return _Tokens(access, refresh, time.monotonic() + expires_in - margin)


class _Progress:
    """Calls a progress callback at most every `interval` seconds, and once at the end."""

    def __init__(self, callback: ProgressCallback | None, interval: float) -> None:
        self.callback = callback
        self.interval = interval
        self.last = 0.0

    async def report(self, seen: int, *, final: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not final and now - self.last < self.interval:
            return
        self.last = now
        result = self.callback(seen)
        if inspect.isawaitable(result):
            await result


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real failure of a task group, preferring upstream errors."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    for leaf in leaves:
        if isinstance(leaf, UpstreamError):
            return leaf
    return leaves[0]
