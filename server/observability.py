"""Request ids, structured JSON logs and Prometheus metrics.

Every HTTP request gets an id (the caller's `X-Request-ID` when it is sane, else a new one),
echoed in the response and stamped on every log line written while serving it; masked errors
are logged with it, so a user's report can be matched to the server's log.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import json
import logging
import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # whole value: `$` would let a "\n" end it

REGISTRY = CollectorRegistry()
GRAPHQL_REQUESTS = Counter(
    "msp_graphql_requests_total",
    "GraphQL operations",
    ["operation", "outcome"],
    registry=REGISTRY,
)
GRAPHQL_SECONDS = Histogram(
    "msp_graphql_request_seconds",
    "GraphQL operation latency",
    ["operation"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SYNC_RUNS = Counter("msp_sync_runs_total", "Finished sync runs", ["state"], registry=REGISTRY)
CHECKINS = Counter("msp_agent_checkins_total", "Agent check-ins accepted", registry=REGISTRY)
ENROLMENTS = Counter("msp_agent_enrolments_total", "Agent enrolments", registry=REGISTRY)
CONNECTIONS_TIMED_OUT = Counter(
    "msp_connections_timed_out_total",
    "Connections closed because a request's headers or body did not arrive in time",
    ["phase"],
    registry=REGISTRY,
)
CONNECTIONS_REFUSED = Counter(
    "msp_connections_refused_total",
    "Requests and websocket handshakes refused with 503: MSP_CONSOLE_MAX_CONNECTIONS open",
    registry=REGISTRY,
)
REQUEST_HEADERS_TOO_LARGE = Counter(
    "msp_request_headers_too_large_total",
    "Connections refused with 431: a request line and headers past MSP_CONSOLE_MAX_HEADER_BYTES",
    registry=REGISTRY,
)
SUBSCRIPTIONS_OPEN = Gauge(
    "msp_subscriptions_open",
    "GraphQL subscriptions being served",
    registry=REGISTRY,
    multiprocess_mode="livesum",  # with several workers: the open ones of live workers, summed
)
SUBSCRIPTION_RENDERS = Counter(
    "msp_subscription_renders_total",
    "Objects of subscription events rendered: once per row and selection shape for the "
    "subscribers that share them, else once per subscriber (counted with the execution "
    "shortcuts on)",
    registry=REGISTRY,
)
PASSWORD_HASHING = Gauge(
    "msp_password_hashing",
    "Password hashes and verifications running or waiting for a hashing thread",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
SHARED_METRICS_FOLDER = "PROMETHEUS_MULTIPROC_DIR"
MAX_OPERATION_LABELS = 200  # operation names come from clients: bound the label set


class RequestIdMiddleware:
    """Pure ASGI: sets the request id for the request's task and answers with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        value = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        token = request_id.set(value)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", value.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being served."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (rid := request_id.get()) is not None:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's loggers (its own lines and the access log) in the same JSON lines, in every
    worker process (uvicorn applies it in each)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "server.observability.JsonFormatter"}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["json"], "level": level.upper()},
        "loggers": {
            name: {"handlers": [], "level": level.upper(), "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class ThrottledWarning:
    """A warning a flood repeats (one per refused connection), logged at most once per
    `interval` seconds, each line telling how many more came since the previous one: the log
    stays readable while the metric beside it counts every one."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.message = message
        self.interval = interval
        self.clock = clock
        self.unlogged = 0
        self.logged_at = -math.inf

    def warn(self) -> None:
        now = self.clock()
        if now < self.logged_at + self.interval:
            self.unlogged += 1
            return
        if self.unlogged:
            self.logger.warning(
                "%s (and %d more in the %.0f s since the previous such line)",
                self.message,
                self.unlogged,
                now - self.logged_at,
            )
        else:
            self.logger.warning("%s", self.message)
        self.unlogged = 0
        self.logged_at = now


class OperationMetrics(SchemaExtension):
    """Counts and times every GraphQL operation by name and outcome."""

    _names: set[str] = set()

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        name = context.operation_name or "anonymous"
        if name not in self._names:
            if len(self._names) >= MAX_OPERATION_LABELS:
                name = "other"
            else:
                self._names.add(name)
        result = context.result
        outcome = "error" if result is not None and getattr(result, "errors", None) else "ok"
        GRAPHQL_REQUESTS.labels(name, outcome).inc()
        GRAPHQL_SECONDS.labels(name).observe(time.perf_counter() - started)


@contextlib.contextmanager
def metrics_shared_between_workers() -> Iterator[None]:
    """Around several workers: prometheus_client keeps every worker's values in files of one
    folder (PROMETHEUS_MULTIPROC_DIR, else a temporary one), and `/metrics`, whichever worker
    answers, sums them."""
    with contextlib.ExitStack() as stack:
        configured = os.environ.get(SHARED_METRICS_FOLDER)
        folder = Path(
            configured
            or stack.enter_context(tempfile.TemporaryDirectory(prefix="msp-console-metrics-"))
        )
        for stale in folder.glob("*.db"):  # a previous run's values
            stale.unlink()
        os.environ[SHARED_METRICS_FOLDER] = str(folder)
        yield


def worker_stopped() -> None:
    """A stopping worker's live gauges (open subscriptions) no longer count."""
    if SHARED_METRICS_FOLDER in os.environ:
        multiprocess.mark_process_dead(os.getpid())


def metrics_endpoint(
    token: str, public: bool
) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """`/metrics`: for anyone when `public`; else only with `Authorization: Bearer <token>`
    (compared in constant time), and not there at all (404) without a token. Metrics name
    operations and load: an internet-facing console must not hand them to strangers."""
    expected = hashlib.sha256(token.encode()).digest() if token else None

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        scheme, _, credentials = given.partition(" ")
        digest = hashlib.sha256(credentials.strip().encode("utf-8", "surrogatepass")).digest()
        return (
            expected is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(expected, digest)
        )

    async def metrics(request: Request) -> Response:
        if not public:
            if expected is None:
                return Response("Not Found", status_code=404, media_type="text/plain")
            if not authorized(request):
                return Response(
                    "a bearer token is needed",
                    status_code=401,
                    media_type="text/plain",
                    headers={"www-authenticate": "Bearer"},
                )
        registry = REGISTRY
        if SHARED_METRICS_FOLDER in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
