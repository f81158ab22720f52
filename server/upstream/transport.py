"""Requests to the MSP Administrator: patient with failures, bounded against a hostile upstream.

Backs off on 503/429 within `max_backoff_total` seconds (a `Retry-After` is honoured), retries
other failures `max_retries` times, never follows a redirect, reads at most `max_body_bytes` of
an answer and gives up at the deadline `max_seconds` after opening. Knows nothing of tokens
(`tokens.py`) or of what the answers mean (`client.py`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from server.upstream.errors import (
    UpstreamAuthError,
    UpstreamLimitExceeded,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from server.upstream.records import UpstreamStats

logger = logging.getLogger(__name__)

_READ_CHUNK: Final = 65_536
_TRANSIENT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


def retry_after(value: str | None) -> float | None:
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


def error_code(body: bytes) -> Any:
    """The `code` of an error body, None when it has none."""
    try:
        return json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None


def json_of(endpoint: str, status: int, body: bytes, subject: str | None) -> Any:
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
        raise UpstreamProtocolError(f"MSP Administrator {endpoint} rejected the request as invalid")
    raise UpstreamProtocolError(f"MSP Administrator {endpoint} answered status {status}")


class Transport:
    """One HTTP session to one MSP Administrator, with the retry policy and the limits."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        max_retries: int,
        max_backoff_total: float,
        backoff_base: float,
        backoff_max: float,
        max_body_bytes: int | None,
        max_seconds: float | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_backoff_total = max_backoff_total
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_body_bytes = max_body_bytes
        self.max_seconds = max_seconds
        self.stats = UpstreamStats()
        self._session: aiohttp.ClientSession | None = None
        self._jitter = random.Random()
        self._in_flight = 0
        self._busy_since = 0.0
        self._deadline: float | None = None

    @property
    def host(self) -> str:
        """The host the client calls, as error messages name it."""
        return urlsplit(self.base_url).hostname or self.base_url

    def open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Accept": "application/json"},
            )
            if self.max_seconds is not None:
                self._deadline = time.monotonic() + self.max_seconds
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._deadline = None

    async def send(
        self, endpoint: str, method: str, payload: dict[str, Any] | None, access: str | None
    ) -> tuple[int, str | None, bytes]:
        """One request with the retry policy; returns (status, Retry-After, body) of the answer
        that ended it (anything but 429 and 5xx). Redirects are answers, never followed."""
        session = self.open()
        url = f"{self.base_url}/api/{endpoint}"
        headers = {"Authorization": f"Bearer {access}"} if access else {}
        failures = 0
        problem = ""
        throttled = 0
        throttled_since: float | None = None
        while True:
            left = self.time_left(endpoint)
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
                    status, wait_header = answer.status, answer.headers.get("Retry-After")
                    body = await self._read(endpoint, answer)
            except _TRANSIENT as exc:
                problem = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
                status, wait_header, body = 0, None, b""
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
                delay = retry_after(wait_header)
                if delay is None:
                    delay = self.backoff(throttled)
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
                self.time_left(endpoint)  # a timeout cut short by the deadline is the deadline's
                if failures > self.max_retries and status == 0:
                    raise UpstreamUnreachable(
                        f"could not reach the MSP Administrator at {self.host} "
                        f"({endpoint}, {failures} attempts)"
                    )
                if failures > self.max_retries:
                    raise UpstreamUnavailable(
                        f"MSP Administrator {endpoint} {what}; giving up after {failures} attempts"
                    )
                delay = self.backoff(failures)
            elif 300 <= status < 400:
                raise UpstreamProtocolError(
                    f"MSP Administrator {endpoint} answered a redirect ({status}), which the API "
                    "never does; it was not followed"
                )
            else:
                return status, wait_header, body
            left = self.time_left(endpoint)
            if left is not None and delay >= left:
                raise self.out_of_time(endpoint)
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

    def time_left(self, endpoint: str) -> float | None:
        """Seconds before the deadline (None without one); past it, the limit's error."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self.out_of_time(endpoint)
        return left

    def out_of_time(self, endpoint: str) -> UpstreamLimitExceeded:
        return UpstreamLimitExceeded(
            f"MSP Administrator calls took longer than the limit of {self.max_seconds:g} s "
            f"(at {endpoint})",
            "max_seconds",
        )

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + self._jitter.uniform(0, ceiling / 2)
