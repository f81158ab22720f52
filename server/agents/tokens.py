"""Agent token cache: token hash -> computer, so a check-in authenticates without the database.

Misses arriving together are loaded in one statement. A token leaves at once when its computer
is removed or a re-enrolment supersedes it, on whichever process that happened (`revoke`, called
for `AGENT_TOKENS_REVOKED` events); and, should an event be lost, when a batch write finds the
token no longer stored, so a dead token is refused again after at most one flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from server.domain.agents import AgentIdentity, load_agents

log = logging.getLogger(__name__)


class AgentTokenCache:
    def __init__(
        self,
        *,
        max_entries: int = 2_000_000,
        miss_ttl: float = 30.0,
        max_misses: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.miss_ttl = miss_ttl
        self.max_misses = max_misses
        self.clock = clock
        self._entries: dict[str, AgentIdentity] = {}
        self._by_computer: dict[int, str] = {}
        self._misses: dict[str, float] = {}  # unknown token hash -> until when it is known unknown
        self._pending: dict[str, asyncio.Future[AgentIdentity | None]] = {}
        self._revoked_during_load: set[str] = set()
        self._loading = False
        self._load_task: asyncio.Task[None] | None = None
        self.loads = 0  # statements issued for misses (for tests and metrics)

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, token_hash: str) -> AgentIdentity | None:
        return self._entries.get(token_hash)

    async def get(self, token_hash: str) -> AgentIdentity | None:
        """The identity holding this token hash, or None for an unknown or superseded token."""
        identity = self._entries.get(token_hash)
        if identity is not None:
            return identity
        until = self._misses.get(token_hash)
        if until is not None:
            if until > self.clock():
                return None
            del self._misses[token_hash]
        future = self._pending.get(token_hash)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pending[token_hash] = future
            if not self._loading:
                self._loading = True
                asyncio.get_running_loop().call_soon(self._spawn_load)
        return await asyncio.shield(future)

    def _spawn_load(self) -> None:
        self._load_task = asyncio.ensure_future(self._load())

    async def _load(self) -> None:
        try:
            while self._pending:
                pending, self._pending = self._pending, {}
                try:
                    found = await load_agents(list(pending))
                    self.loads += 1
                except Exception as exc:
                    for future in pending.values():
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for token_hash, future in pending.items():
                    identity = found.get(token_hash)
                    if token_hash in self._revoked_during_load:  # read before it died
                        identity = None
                    if identity is None:
                        self._remember_miss(token_hash)
                    else:
                        self.put(identity)
                    if not future.done():
                        future.set_result(identity)
        finally:
            self._loading = False
            self._revoked_during_load.clear()

    def _remember_miss(self, token_hash: str) -> None:
        if len(self._misses) >= self.max_misses:
            self._misses.clear()
        self._misses[token_hash] = self.clock() + self.miss_ttl

    def put(self, identity: AgentIdentity) -> None:
        previous = self._by_computer.get(identity.computer_id)
        if previous is not None and previous != identity.token_hash:
            self._entries.pop(previous, None)
        if len(self._entries) >= self.max_entries:
            self._evict(len(self._entries) // 10 + 1)
        self._entries[identity.token_hash] = identity
        self._by_computer[identity.computer_id] = identity.token_hash
        self._misses.pop(identity.token_hash, None)

    def _evict(self, count: int) -> None:
        for token_hash in list(self._entries)[:count]:
            self.forget(token_hash)

    def forget(self, token_hash: str) -> None:
        identity = self._entries.pop(token_hash, None)
        if identity is not None and self._by_computer.get(identity.computer_id) == token_hash:
            del self._by_computer[identity.computer_id]

    def revoke(self, token_hashes: Iterable[str]) -> None:
        """Refuse these token hashes from now on, also when a load in flight read them before
        they died (a removed computer's token, or one a re-enrolment superseded)."""
        for token_hash in token_hashes:
            self.forget(token_hash)
            self._remember_miss(token_hash)
            if self._loading:
                self._revoked_during_load.add(token_hash)

    def clear(self) -> None:
        self._entries.clear()
        self._by_computer.clear()
        self._misses.clear()

    def refresh(self, written: Iterable[str], rows: Mapping[str, Mapping[str, Any]]) -> None:
        """After a batch write: adopt the stored values of the rows it updated and forget the
        tokens (of `written`) that matched no row any more."""
        for token_hash in written:
            row = rows.get(token_hash)
            if row is None:
                self.forget(token_hash)
                continue
            identity = self._entries.get(token_hash)
            if identity is not None:
                identity.update(row)
