"""Waiting in tests for what the server reaches on its own: a condition and a deadline, never a
guessed sleep (a sleep is too short on a busy machine and too long everywhere else)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

from server.observability import REGISTRY

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T | Awaitable[T]], *, within: float = 5.0, what: str = "the condition"
) -> T:
    """The first truthy result of `probe` (a function or a coroutine function), polled every
    10 ms; fails naming `what` and the last result when `within` seconds pass without one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within} s (last: {result!r})")
        await asyncio.sleep(0.01)


def subscriptions_open() -> int:
    """GraphQL subscriptions this process serves (`msp_subscriptions_open`): one counts from the
    moment it listens for events."""
    return int(REGISTRY.get_sample_value("msp_subscriptions_open") or 0)
