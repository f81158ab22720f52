"""SQLite's write-ahead log copied back into the database file off the writers' path.

SQLite runs that copy (a checkpoint, with its fsyncs) in whichever connection commits past
`wal_autocheckpoint` pages, so the writer waits for it: a sync's commit at 100,000 companies
waited about a second, a re-sync's 0.7 s. Our connections let the log grow to
`AUTOCHECKPOINT_PAGES` instead (a safety net, should no checkpointer run), and the app's
lifespan runs a `WalCheckpointer`: every second, a PASSIVE checkpoint from a connection of its
own, in a thread, which waits for no reader and no writer. A log fully copied is started over
by the next commit, so it stays as large as what is written between two checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from server.background import PeriodicTask

AUTOCHECKPOINT_PAGES = 131_072  # 512 MiB of 4 KiB pages: only when no checkpointer keeps up


class WalCheckpointer(PeriodicTask):
    """`start()` in the app's lifespan (SQLite only), `stop()` at its end."""

    name = "wal-checkpoints"
    failure = "WAL checkpoint failed"

    def __init__(self, path: str | Path, *, period: float = 1.0) -> None:
        self.path = Path(path)
        self.period = period

    async def run_once(self) -> tuple[int, int]:
        """One checkpoint: (frames in the log, frames copied into the database file)."""
        return await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> tuple[int, int]:
        # a connection per round: a round cancelled by `stop()` may still run in its thread
        uri = f"{self.path.resolve().as_uri()}?mode=rw"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as connection:
            _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return frames, copied
