"""A sync in a process of its own, for the test that kills it: `python -m
tests.domain.sync_process INSTANCE_ID PAUSE` with DATABASE_URL and MSP_CONSOLE_SECRET_KEY set
pauses PAUSE seconds inside the apply transaction after its first write, saying so on stderr."""

from __future__ import annotations

import asyncio
import sys

from tortoise import Tortoise

from server.domain import sync_runs
from server.models import db
from server.settings import Settings


async def main(instance_id: int, pause: float) -> None:
    settings = Settings.from_env()

    async def paused() -> None:
        print("msp-console sync: apply phase paused after its first write", file=sys.stderr)
        sys.stderr.flush()
        await asyncio.sleep(pause)

    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    try:
        run = await sync_runs.sync_now(instance_id, settings, after_first_write=paused)
        print(run.state.value, run.error, file=sys.stderr)
    finally:
        await Tortoise.close_connections()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
