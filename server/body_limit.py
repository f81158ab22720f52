"""A bound on request bodies, for every route: a hostile client must not make a worker hold
(and JSON-decode) an arbitrarily large body, nor log an error for one it never finished
sending. The agent API and installer downloads keep their own, tighter bounds."""

from __future__ import annotations

import orjson
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Pure ASGI: answers 413 to a body over `limit` bytes, whether its length is declared or
    only found while it streams in, before the route has read it all; ends quietly a request
    whose client left before its body was in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)
        except ClientDisconnect:
            # gone before its body was in (hung up, or its deadline closed it): no one to answer,
            # and no error of ours to log with a traceback, once per connection of a flood
            pass

    async def _refuse(self, send: Send) -> None:
        message = f"request body larger than {self.limit} bytes"
        body = orjson.dumps({"errors": [{"message": message, "extensions": {"code": "TOO_LARGE"}}]})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
