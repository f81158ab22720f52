"""How the console is served by uvicorn, with the connection limits uvicorn does not offer.

The console faces the internet (agents reach it), so a client without any token must not hold a
connection, its file descriptor and its buffers, for ever: by sending nothing, by trickling its
request headers a byte every few seconds (slowloris; uvicorn starts no timer until a first
response completes) or by trickling a body that stays within the size limit. `DeadlineH11Protocol`
closes such connections; `uvicorn_options` is the one place that says how every listener
(`serve`, the agent port, the tests' servers) runs, so the tests run what production runs.

uvicorn's h11 protocol is pinned, not its default ("auto", httptools when installed): httptools
keeps any number of header bytes (48 MB in one request, measured), h11 refuses a header block
past `h11_max_incomplete_event_size` with 400 and closes.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.observability import CONNECTIONS_TIMED_OUT
from server.settings import Settings


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request line and headers are not all in
    `header_timeout` seconds after it opened or after its previous response, or whose body is
    not all in `body_timeout` seconds after its headers. Bytes arriving meanwhile do not move the
    deadline. A websocket, once upgraded, belongs to another protocol and escapes both; its
    handshake is held to the connection cap like a plain request."""

    def __init__(
        self, *args: Any, header_timeout: float, body_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # the client's h11 state a deadline bounds: headers awaited, or a body
        self.timeouts: dict[object, float] = {h11.IDLE: header_timeout, h11.SEND_BODY: body_timeout}
        self.awaited: object = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._follow_request()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """uvicorn applies its connection cap (`limit_concurrency`) to plain requests only: a
        websocket handshake past it gets the same 503, or websockets would have no cap at all."""
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            self.logger.warning("Exceeded concurrency limit.")
            self._refuse_as_unavailable()
        else:
            super().handle_websocket_upgrade(event)

    def _refuse_as_unavailable(self) -> None:
        body = b"Service Unavailable"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=503, headers=headers, reason=body),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _follow_request(self) -> None:
        """Arm a deadline when the client's side of the connection starts waiting for headers
        (IDLE) or a body (SEND_BODY); keep it while it stays there; drop it otherwise."""
        state = self.conn.their_state
        if self.transport.get_protocol() is not self or state not in self.timeouts:
            self._cancel_deadline()
        elif state is not self.awaited:
            self._cancel_deadline()
            self.awaited = state
            self.deadline = self.loop.call_later(self.timeouts[state], self._expire, state)

    def _expire(self, awaited: object) -> None:
        self.deadline = None
        if (
            self.conn.their_state is awaited
            and self.transport.get_protocol() is self
            and not self.transport.is_closing()
        ):
            CONNECTIONS_TIMED_OUT.labels("headers" if awaited is h11.IDLE else "body").inc()
            self.transport.close()

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = None
        self.awaited = None


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options every uvicorn serving the console is given (`uvicorn.run` or `Config`)."""
    return {
        # a partial of a module-level class: `--workers` pickles it into each worker process
        "http": functools.partial(
            DeadlineH11Protocol,
            header_timeout=settings.request_header_timeout,
            body_timeout=settings.request_body_timeout,
        ),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_connections,
        "proxy_headers": False,  # server.client_address decides
        "ws_max_size": settings.max_request_bytes,
        # subscription messages are a few hundred bytes: compressing each costs a socket's write
        # more CPU than it saves bytes, and a zlib context per open socket
        "ws_per_message_deflate": False,
    }
