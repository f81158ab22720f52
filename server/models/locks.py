"""Locks that hold across tasks, processes and (on PostgreSQL) hosts, and die with their holder.

On PostgreSQL a lock is a session advisory lock on a connection of its own: a crashed holder's
connection closes and the lock goes with it. On SQLite, whose writers share one host, it is a
POSIX record lock on a byte of a file next to the database, which the kernel drops when the
holding process dies; an in-memory database falls back to this process alone. In every case
tasks of one process exclude each other through `_held`.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Protocol

import asyncpg
from tortoise.backends.base_postgres.client import BasePostgresClient

from server.models import db

SYNC_RUN = 1  # key: the instance id; held while a sync of that instance runs
SYNC_SCHEDULER = 2  # key: 0; held by the one process that schedules syncs

_held: set[tuple[int, int]] = set()
_lock_files: dict[str, int] = {}


class Lock(Protocol):
    released: bool

    async def release(self) -> None: ...


class _Held:
    def __init__(self, space: int, key: int) -> None:
        self.space, self.key = space, key
        self.released = False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            try:
                await self._release()
            finally:
                _held.discard((self.space, self.key))

    async def _release(self) -> None:
        return None


class _AdvisoryLock(_Held):
    def __init__(self, space: int, key: int, connection: asyncpg.Connection) -> None:
        super().__init__(space, key)
        self.connection = connection

    async def _release(self) -> None:
        # Closing the session releases its advisory locks.
        await self.connection.close()


class _FileLock(_Held):
    def __init__(self, space: int, key: int, fd: int) -> None:
        super().__init__(space, key)
        self.fd = fd

    async def _release(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, _offset(self.space, self.key))


def _offset(space: int, key: int) -> int:
    return (space << 32) | key


async def try_lock(space: int, key: int) -> Lock | None:
    """The lock `(space, key)` if nobody holds it, else None; never waits."""
    if (space, key) in _held:
        return None
    _held.add((space, key))
    try:
        lock = await _acquire(space, key)
    except BaseException:
        _held.discard((space, key))
        raise
    if lock is None:
        _held.discard((space, key))
    return lock


async def _acquire(space: int, key: int) -> Lock | None:
    client = db.connection()
    client = getattr(client, "_parent", client)  # a transaction's client knows less
    if isinstance(client, BasePostgresClient):  # asyncpg's or psycopg's: db.is_postgres()
        connection = await asyncpg.connect(
            host=client.host,
            port=client.port,
            user=client.user,
            password=client.password or None,
            database=client.database,
            timeout=10,
        )
        try:
            taken = await connection.fetchval("SELECT pg_try_advisory_lock($1, $2)", space, key)
        except BaseException:
            await connection.close()
            raise
        if not taken:
            await connection.close()
            return None
        return _AdvisoryLock(space, key, connection)
    filename = getattr(client, "filename", ":memory:")
    if not filename or filename == ":memory:":
        return _Held(space, key)
    fd = _lock_file(f"{filename}-locks")  # beside the -wal and -shm files
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _offset(space, key))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return None
        raise
    return _FileLock(space, key, fd)


def _lock_file(path: str) -> int:
    """One descriptor per file for the life of the process: closing any descriptor of a file
    drops every record lock the process holds on it."""
    fd = _lock_files.get(path)
    if fd is None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        _lock_files[path] = fd
    return fd
