"""Reading a whole company tree from the MSP Administrator: `concurrency` walkers page through
the children of every company that can have some, and every company is checked as it arrives
(once, under the parent that listed it, no cycle, within the limits of companies and depth)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from server.upstream.codes import CUSTOMER
from server.upstream.errors import UpstreamError, UpstreamLimitExceeded, UpstreamTreeError
from server.upstream.records import UpstreamCompany, UpstreamSnapshot

if TYPE_CHECKING:
    from server.upstream.client import MspAdministratorClient

ProgressCallback = Callable[[int], Awaitable[None] | None]


def too_many_companies(limit: int | None, where: str) -> UpstreamLimitExceeded:
    return UpstreamLimitExceeded(
        f"MSP Administrator company tree holds more than {limit} companies, "
        f"the limit of a sync ({where})",
        "max_companies",
    )


def check_level(limit: int | None, company_id: str, level: int, above: int) -> None:
    if limit is not None and level > limit:
        raise UpstreamLimitExceeded(
            f"MSP Administrator company tree is deeper than the limit of {limit} "
            f"levels (counting the {above} companies above the account): company "
            f"{company_id} is on level {level}",
            "max_depth",
        )


async def fetch_tree(
    client: MspAdministratorClient, root_id: str, on_progress: ProgressCallback | None = None
) -> UpstreamSnapshot:
    """Reads the whole tree under `root_id` through `client` (see its `fetch_tree`)."""
    max_companies, max_depth = client.max_companies, client.max_depth
    root, ancestors = await client.company_detail(root_id)
    above = {ref.public_id for ref in ancestors}
    level_of = {root_id: len(ancestors) + 1}
    check_level(max_depth, root_id, level_of[root_id], len(ancestors))
    parent_of: dict[str, str] = {}
    children_of: dict[str, list[UpstreamCompany]] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    progress = _Progress(on_progress, client.progress_interval)
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
        if max_companies is not None and len(parent_of) + 1 > max_companies:
            raise too_many_companies(max_companies, f"company {child_id} is beyond it")
        level_of[child_id] = level_of[parent_id] + 1
        check_level(max_depth, child_id, level_of[child_id], len(ancestors))

    async def walk() -> None:
        while True:
            parent_id = await queue.get()
            try:
                room = None
                if max_companies is not None:
                    room = max_companies - len(parent_of) - 1
                children = await client.children(parent_id, at_most=room)
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
            walkers = [group.create_task(walk()) for _ in range(client.concurrency)]
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
