"""How the console is served by uvicorn, with the connection limits uvicorn does not offer.

The console faces the internet (agents reach it), so a client without any token must not hold a
connection, its file descriptor and its buffers, for ever: by sending nothing, by trickling its
request headers a byte every few seconds (slowloris; uvicorn starts no timer until a first
response completes), by trickling a body that stays within the size limit, or by sending header
bytes without end (httptools, uvicorn's fastest protocol, keeps any number: 48 MB in one request,
measured). `DeadlineHttpToolsProtocol` closes such connections; `uvicorn_options` is the one
place that says how every listener (`serve`, the agent port, the tests' servers) runs, so the
tests run what production runs. A flood of such clients is counted in full by the metrics but
logged in one line per kind a minute, so it cannot flood the log too.

httptools rather than h11 (which has a header size limit): an agent check-in costs about a third
less server CPU with it (`python -m tests.bench.agents`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from server.observability import (
    CONNECTIONS_REFUSED,
    CONNECTIONS_TIMED_OUT,
    REQUEST_HEADERS_TOO_LARGE,
    ThrottledWarning,
)
from server.settings import Settings

log = logging.getLogger(__name__)

HEADERS = "headers"
BODY = "body"
HEADERS_TOO_LARGE = "headers_too_large"
OVER_CAPACITY = "over_capacity"
CAPACITY_WARNING = "Exceeded concurrency limit."  # uvicorn's, for each request past the cap


class _ProtocolLog(logging.LoggerAdapter):
    """uvicorn's logger as a connection's protocol uses it, but uvicorn's warning for each
    request refused past the connection cap counts in the metric and goes through the
    listener's `ThrottledWarning`: a flood at the cap would flood the log too."""

    def __init__(self, logger: logging.Logger, over_capacity: ThrottledWarning) -> None:
        super().__init__(logger, {})
        self.over_capacity = over_capacity

    @property
    def level(self) -> int:  # read by uvicorn on every connection
        return self.logger.level

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg == CAPACITY_WARNING:
            CONNECTIONS_REFUSED.inc()
            self.over_capacity.warn()
        else:
            super().warning(msg, *args, **kwargs)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request line and headers are not
    all in `header_timeout` seconds after it opened or after its previous response, or whose
    body is not all in `body_timeout` seconds after its headers: with 408 when part of a request
    came that nothing answered yet, without a word when none did (an idle or silent client).
    Bytes arriving meanwhile do not move the deadline. A request line and headers still
    incomplete past `max_header_bytes` get 431. A websocket, once upgraded, belongs to another
    protocol and escapes all three; its handshake is held to the connection cap like a plain
    request. `warnings` (by HEADERS, BODY, HEADERS_TOO_LARGE, OVER_CAPACITY) are the listener's,
    shared by its connections."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        body_timeout: float,
        max_header_bytes: int,
        warnings: Mapping[str, ThrottledWarning],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # typed a Logger by uvicorn, which calls warning, error, log and level of it
        self.logger = _ProtocolLog(self.logger, warnings[OVER_CAPACITY])  # type: ignore[assignment]
        self.timeouts = {HEADERS: header_timeout, BODY: body_timeout}
        self.max_header_bytes = max_header_bytes
        self.warnings = warnings
        # httptools buffers a header's name and value itself and calls back only once each is
        # whole, so the head is counted by the bytes read while it is incomplete
        self.head_bytes = 0
        self.head_complete = False
        self.receiving_body = False
        self.awaited: str | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._follow_request()

    def data_received(self, data: bytes) -> None:
        if not self.head_complete:
            self.head_bytes += len(data)
        super().data_received(data)
        if (
            not self.head_complete
            and self.head_bytes > self.max_header_bytes
            and not self.transport.is_closing()
        ):
            REQUEST_HEADERS_TOO_LARGE.inc()
            self.warnings[HEADERS_TOO_LARGE].warn()
            self._refuse(431, b"Request Header Fields Too Large")
        self._follow_request()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.head_complete = True
        self.receiving_body = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.receiving_body = False
        self.head_complete = False  # the next request's head starts
        self.head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()

    def handle_websocket_upgrade(self) -> None:
        """uvicorn applies its connection cap (`limit_concurrency`) to plain requests only: a
        websocket handshake past it gets the same 503, or websockets would have no cap at all."""
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            self.logger.warning(CAPACITY_WARNING)
            self._refuse(503, b"Service Unavailable")
        else:
            super().handle_websocket_upgrade()

    def _refuse(self, status: int, message: bytes) -> None:
        """Answer `status` with `message` and close, as uvicorn answers a malformed request."""
        response = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            response += [name, b": ", value, b"\r\n"]
        response += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(message),
            b"connection: close\r\n\r\n",
            message,
        ]
        self.transport.write(b"".join(response))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _follow_request(self) -> None:
        """Arm a deadline when the client starts owing a body (its headers are in and its request
        is the one being served) or the next request's headers (no response is outstanding);
        keep it while the client owes the same; drop it otherwise."""
        awaited: str | None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            awaited = None
        elif self.receiving_body and not self.pipeline:
            awaited = BODY
        elif self.cycle is None or self.cycle.response_complete:
            awaited = HEADERS
        else:
            awaited = None
        if awaited != self.awaited:
            self._cancel_deadline()
            if awaited is not None:
                self.awaited = awaited
                self.deadline = self.loop.call_later(self.timeouts[awaited], self._expire)

    def _expire(self) -> None:
        self.deadline = None
        if self.transport.get_protocol() is not self or self.transport.is_closing():
            return
        assert self.awaited is not None
        CONNECTIONS_TIMED_OUT.labels(self.awaited).inc()
        self.warnings[self.awaited].warn()
        if self._request_unanswered():
            self._refuse(408, b"Request Timeout")  # RFC 9110 15.5.9
        else:
            self.transport.close()

    def _request_unanswered(self) -> bool:
        """Whether part of a request came that nothing answered yet: its body is awaited and
        no response started (one may have, to a body refused unread), or its head began. uvicorn
        gives a request a new scope at its first byte and the scope a method once its head is
        in; this is read only when a deadline passes, so a request costs nothing more."""
        if self.awaited == BODY:
            return self.cycle is not None and not self.cycle.response_started
        return self.scope is not None and "method" not in self.scope

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = None
        self.awaited = None


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options every uvicorn serving the console is given (`uvicorn.run` or `Config`)."""
    warnings = {
        HEADERS: ThrottledWarning(
            log,
            "Closed a connection whose request line and headers were not all in within "
            f"{settings.request_header_timeout:g} s (408 if part had come)",
        ),
        BODY: ThrottledWarning(
            log,
            "Closed a connection whose request body was not all in within "
            f"{settings.request_body_timeout:g} s (408 unless answered already)",
        ),
        HEADERS_TOO_LARGE: ThrottledWarning(
            log,
            "Refused a request line and headers past "
            f"{settings.max_header_bytes} bytes with 431 (Request Header Fields Too Large)",
        ),
        OVER_CAPACITY: ThrottledWarning(
            log,
            f"Refused a request with 503: {settings.max_connections} connections open "
            "(MSP_CONSOLE_MAX_CONNECTIONS)",
        ),
    }
    return {
        # a partial of a module-level class: `--workers` pickles it into each worker process
        "http": functools.partial(
            DeadlineHttpToolsProtocol,
            header_timeout=settings.request_header_timeout,
            body_timeout=settings.request_body_timeout,
            max_header_bytes=settings.max_header_bytes,
            warnings=warnings,
        ),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_connections,
        "proxy_headers": False,  # server.client_address decides
        "ws_max_size": settings.max_request_bytes,
        # subscription messages are a few hundred bytes: compressing each costs a socket's write
        # more CPU than it saves bytes, and a zlib context per open socket
        "ws_per_message_deflate": False,
    }
