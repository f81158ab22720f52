"""`msp-console`: serve, migrate, provision accounts, sync, and the simulators."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from server.observability import (
    configure_logging,
    metrics_shared_between_workers,
    uvicorn_log_config,
)
from server.settings import Settings, SettingsError

GRACEFUL_SHUTDOWN_SECONDS = 20


async def apply_migrations(settings: Settings) -> None:
    """Bring the database to the latest schema (idempotent)."""
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate

    from server.models import db

    try:
        await migrate(config=db.tortoise_config(settings.database_url))
    finally:
        await Tortoise.close_connections()


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    asyncio.run(apply_migrations(settings))
    print("database is up to date")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from server.connection_limits import uvicorn_options

    settings = Settings.from_env(demo=args.demo)
    settings.check_secure()
    asyncio.run(apply_migrations(settings))
    if args.workers > 1 and not settings.is_postgres:
        print("several workers need PostgreSQL (DATABASE_URL); SQLite serves one", file=sys.stderr)
        return 2
    with metrics_shared_between_workers() if args.workers > 1 else contextlib.nullcontext():
        uvicorn.run(
            "server.app:app_from_env" if not args.demo else "server.demo:demo_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            log_config=uvicorn_log_config(args.log_level),
            **uvicorn_options(settings),
            # a connection that never closes must not hold the shutdown (and the final flush of
            # buffered check-ins) forever
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    return 0


def cmd_create_account(args: argparse.Namespace, settings: Settings) -> int:
    from server.domain.accounts import create_account
    from server.domain.errors import DomainError
    from server.models.enums import Service

    async def create() -> int:
        from tortoise import Tortoise

        from server.models import db

        await Tortoise.init(config=db.tortoise_config(settings.database_url))
        try:
            account = await create_account(
                args.email, args.password, [Service(s) for s in args.service]
            )
        except DomainError as exc:
            print(f"refused: {exc.message} ({exc.code})", file=sys.stderr)
            return 1
        finally:
            await Tortoise.close_connections()
        print(f"account {account.email} registered with {account.services}")
        return 0

    asyncio.run(apply_migrations(settings))
    return asyncio.run(create())


def cmd_recount(args: argparse.Namespace, settings: Settings) -> int:
    """Repair the subtree counters (after a restore or a hand edit of the companies or the
    computers): each instance recounted, its computers counted too, in its own transaction;
    prints how many rows were wrong."""
    from tortoise import Tortoise

    from server.domain import counters
    from server.models import Instance, db

    async def recount() -> int:
        await Tortoise.init(config=db.tortoise_config(settings.database_url))
        try:
            query = Instance.all().order_by("id")
            if args.instance is not None:
                query = query.filter(id=args.instance)
            ids = [instance.id for instance in await query.only("id")]
            if args.instance is not None and not ids:
                print(f"no instance {args.instance}", file=sys.stderr)
                return 1
            for instance_id in ids:
                async with db.transaction():
                    fixed = await counters.recount(instance_id, count_held=True)
                print(f"instance {instance_id}: {fixed} counter rows corrected")
            return 0
        finally:
            await Tortoise.close_connections()

    asyncio.run(apply_migrations(settings))
    return asyncio.run(recount())


def cmd_simulate_upstream(args: argparse.Namespace, settings: Settings) -> int:
    from server.upstream.simulator import serve_simulator

    print(
        f"MSP Administrator simulator on http://{args.host}:{args.port} "
        f"({args.companies} companies, seed {args.seed}); login demo@msp.example / demo",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_simulator(args.host, args.port, args.companies, args.seed))
    return 0


def cmd_simulate_agents(args: argparse.Namespace, settings: Settings) -> int:
    from server.agents import simulate

    return simulate.run(args)


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from server import sync_command

    asyncio.run(apply_migrations(settings))
    return asyncio.run(sync_command.run(args, settings))


def cmd_usage_report(args: argparse.Namespace, settings: Settings) -> int:
    from server import usage_command

    asyncio.run(apply_migrations(settings))
    return asyncio.run(usage_command.run(args, settings))


def cmd_export_schema(args: argparse.Namespace, settings: Settings) -> int:
    """Print the schema's SDL, write it to a file, or check that a file is up to date."""
    from pathlib import Path

    from server.api.schema import build_schema

    sdl = build_schema(settings).as_str().rstrip() + "\n"
    if args.output is None:
        print(sdl, end="")
        return 0
    target = Path(args.output)
    if args.check:
        if not target.exists() or target.read_text() != sdl:
            print(f"{target} is stale: run msp-console export-schema --output {target}")
            return 1
        print(f"{target} matches the schema")
        return 0
    target.write_text(sdl)
    print(f"wrote {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msp-console", description="The MSP console backend (GraphQL API and agent API)."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, then serve the console")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--demo", action="store_true", help="seed a demo account synced from a built-in simulator"
    )
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=cmd_migrate)

    account = commands.add_parser("create-account", help="provision a portal account")
    account.add_argument("--email", required=True)
    account.add_argument("--password", required=True)
    account.add_argument(
        "--service",
        action="append",
        required=True,
        choices=["EBA", "EMA2"],
        help="a service the account is registered with (repeat for a mixed account)",
    )
    account.set_defaults(handler=cmd_create_account)

    sync = commands.add_parser("sync", help="sync from the MSP Administrator now")
    try:
        from server import sync_command

        sync_command.add_arguments(sync)
    except ImportError:  # pragma: no cover - the sync command arrives with the sync issue
        sync.add_argument("--instance", type=int)
    sync.set_defaults(handler=cmd_sync)

    recount = commands.add_parser("recount", help="recount the subtree counters (repair)")
    recount.add_argument("--instance", type=int, help="only this instance (default: all)")
    recount.set_defaults(handler=cmd_recount)
    report = commands.add_parser("usage-report", help="write a month's usage report as CSV")
    from server import usage_command

    usage_command.add_arguments(report)
    report.set_defaults(handler=cmd_usage_report)

    upstream = commands.add_parser("simulate-upstream", help="the MSP Administrator simulator")
    upstream.add_argument("--host", default="127.0.0.1")
    upstream.add_argument("--port", type=int, default=8100)
    upstream.add_argument("--companies", type=int, default=500)
    upstream.add_argument("--seed", type=int, default=1)
    upstream.set_defaults(handler=cmd_simulate_upstream)

    export = commands.add_parser("export-schema", help="write the GraphQL schema as SDL")
    export.add_argument("--output", help="the file to write (default: standard output)")
    export.add_argument("--check", action="store_true", help="fail when --output is stale")
    export.set_defaults(handler=cmd_export_schema)

    agents = commands.add_parser("simulate-agents", help="enrol agents and keep them checking in")
    from server.agents import simulate

    simulate.add_arguments(agents)
    agents.set_defaults(handler=cmd_simulate_agents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("INFO", json_lines=args.command == "serve")
    try:
        settings = Settings.from_env()
        return int(args.handler(args, settings) or 0)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
