"""The MSP Administrator's tokens: log in on first use, renew before expiry and on a 401 code 2,
log in again when a renewal is refused; a call is repeated after either. Tokens and the password
never reach a log line or an error message."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from server.upstream.bodies import Body
from server.upstream.errors import UpstreamAuthError, UpstreamProtocolError
from server.upstream.transport import Transport, error_code, json_of

logger = logging.getLogger(__name__)

_MAX_STRIKES: Final = 2


@dataclass(slots=True)
class _Tokens:
    access: str = field(repr=False)
    refresh: str = field(repr=False)
    renew_at: float
    served: bool = False


class Authenticated:
    """Authenticated calls over a `Transport` as one account."""

    def __init__(self, transport: Transport, username: str, password: str) -> None:
        self.transport = transport
        self.username = username
        self._password = password
        self._tokens: _Tokens | None = None
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """Drop the tokens (the next call logs in afresh)."""
        self._tokens = None

    async def call(
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
            tokens = await self._current()
            status, _, body = await self.transport.send(endpoint, method, payload, tokens.access)
            if status != 401:
                tokens.served = True
                return json_of(endpoint, status, body, subject)
            expired = error_code(body) == 2
            if not expired:
                refusals += 1
            elif not tokens.served:
                strikes += 1
            if refusals > 1 or strikes > _MAX_STRIKES:
                raise UpstreamAuthError(
                    f"MSP Administrator {endpoint} keeps refusing freshly issued access tokens"
                )
            await self._recover(tokens, expired=expired)

    async def _current(self) -> _Tokens:
        async with self._lock:
            if self._tokens is None:
                await self._login()
            elif time.monotonic() >= self._tokens.renew_at:
                await self._renew()
            assert self._tokens is not None
            return self._tokens

    async def _recover(self, rejected: _Tokens, *, expired: bool) -> None:
        """After a 401: renew (expired token) or log in again, unless another call already did."""
        async with self._lock:
            if self._tokens is not rejected:
                return
            if expired:
                await self._renew()
            else:
                await self._login()

    async def _login(self) -> None:
        endpoint = "Token/Get"
        payload = {"username": self.username, "password": self._password}
        status, _, body = await self.transport.send(endpoint, "POST", payload, None)
        if status == 401:
            raise UpstreamAuthError(
                f"MSP Administrator refused the credentials of {self.username!r}"
            )
        self._tokens = self._read_tokens(endpoint, status, body)
        self.transport.stats.logins += 1

    async def _renew(self) -> None:
        if self._tokens is None:
            await self._login()
            return
        endpoint = "Token/Renew"
        payload = {"refreshToken": self._tokens.refresh}
        status, _, body = await self.transport.send(endpoint, "POST", payload, None)
        if status == 401:
            logger.info("MSP Administrator refused the refresh token; logging in again")
            self._tokens = None
            await self._login()
            return
        self._tokens = self._read_tokens(endpoint, status, body)
        self.transport.stats.renewals += 1

    def _read_tokens(self, endpoint: str, status: int, body: bytes) -> _Tokens:
        # Never echo these bodies: they carry tokens.
        if status != 200:
            raise UpstreamProtocolError(f"MSP Administrator {endpoint} answered status {status}")
        data = json_of(endpoint, status, body, None)
        reader = Body(endpoint)
        obj = reader.object(data, "the body")
        access = reader.string(obj, "accessToken", "")
        refresh = reader.string(obj, "refreshToken", "")
        expires_in = reader.integer(obj, "expiresIn", "")
        if expires_in <= 0:
            raise reader.fail("expiresIn", "must be positive")
        # Renew a little before the upstream would refuse the token.
        margin = min(5.0, expires_in / 10)
        return _Tokens(access, refresh, time.monotonic() + expires_in - margin)
