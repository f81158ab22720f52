"""A sync in a process of its own, for the test that kills it: `python -m
tests.domain.sync_process INSTANCE_ID` with DATABASE_URL and MSP_CONSOLE_SECRET_KEY set."""

from __future__ import annotations

import asyncio
import sys

from tortoise import Tortoise

from server.domain import sync
from server.models import db
from server.settings import Settings


async def main(instance_id: int) -> None:
    settings = Settings.from_env()
    await Tortoise.init(config=db.tortoise_config(settings.database_url))
    try:
        run = await sync.sync_now(instance_id, settings)
        print(run.state.value, run.error, file=sys.stderr)
    finally:
        await Tortoise.close_connections()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
