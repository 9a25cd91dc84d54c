"""The ``callcenter`` command line.

Every subcommand loads the settings once (``--config``, environment), sets up logging, and
reports failures as one clear line on stderr with a non-zero exit code, never a traceback for
a user's mistake (bad file, bad settings, unreachable database).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from callcenter import __version__
from callcenter.logs import setup_logging
from callcenter.settings import Settings, load_settings
from callcenter.yamlconf import ConfigError

log = logging.getLogger("callcenter")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1 (or ``code``)."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


# --- db ----------------------------------------------------------------------------------------


async def _with_db(settings: Settings, fn: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    from callcenter.storage.db import open_database

    db = await open_database(settings)
    try:
        return await fn(db)
    finally:
        await db.close()


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.storage import db as dbmod

    async def run(db: dbmod.Database) -> int:
        if args.db_command == "upgrade":
            await asyncio.to_thread(dbmod.upgrade, db.dsn, args.revision)
        elif args.db_command == "downgrade":
            await asyncio.to_thread(dbmod.downgrade, db.dsn, args.revision)
        rev = await dbmod.current_revision(db.engine)
        print(f"database at revision {rev or '(empty)'}")
        return EXIT_OK

    return asyncio.run(_with_db(settings, run))


# --- crm ---------------------------------------------------------------------------------------


def cmd_crm_import(args: argparse.Namespace, settings: Settings) -> int:
    import asyncpg

    from callcenter.crm.importer import ImportError_, import_csv
    from callcenter.storage import db as dbmod

    async def run(db: dbmod.Database) -> int:
        await _require_schema(db)
        conn = await asyncpg.connect(**db.connect_kwargs())
        try:
            report = await import_csv(
                conn,
                args.file,
                region=args.region or settings.crm.default_region,
                dry_run=args.dry_run,
                skip_invalid=args.skip_invalid,
            )
        except ImportError_ as exc:
            raise CliError(f"{args.file}: {exc}") from None
        finally:
            await conn.close()
        shown = report.rejected[: args.max_errors]
        for r in shown:
            print(f"{args.file}: {r}", file=sys.stderr)
        if len(report.rejected) > len(shown):
            print(f"... and {len(report.rejected) - len(shown)} more rejected rows", file=sys.stderr)
        print(report.summary())
        if report.rejected and not args.skip_invalid and not args.dry_run:
            print("nothing was written: fix the rows above, or pass --skip-invalid to import the valid rows",
                  file=sys.stderr)
            return EXIT_FAIL
        return EXIT_OK

    try:
        return asyncio.run(_with_db(settings, run))
    except FileNotFoundError as exc:
        raise CliError(f"{args.file}: no such file") from exc


def _format_card(card: Any) -> str:
    lines = [f"{card.name}  (customer #{card.id})"]
    lines.append(f"  tier: {card.tier}" + ("  ** VIP **" if card.vip else ""))
    for label, value in (
        ("segment", card.segment),
        ("language", card.language),
        ("stage", card.stage),
        ("assigned agent", card.assigned_agent),
        ("tags", ", ".join(card.tags) if card.tags else None),
        ("notes", card.notes),
    ):
        if value:
            lines.append(f"  {label}: {value}")
    if card.do_not_call:
        lines.append("  DO NOT CALL")
    lines.append("  phones: " + ", ".join(f"{e}" + (f" ({lbl})" if lbl else "") for e, lbl in card.phones))
    if card.interactions:
        lines.append("  recent interactions:")
        for i in card.interactions:
            who = f" with {i.agent}" if i.agent else ""
            what = f": {i.summary}" if i.summary else ""
            lines.append(
                f"    {i.at:%Y-%m-%d %H:%M} {i.channel} {i.direction} {i.outcome or ''}{who}{what}".rstrip()
            )
    else:
        lines.append("  recent interactions: none")
    return "\n".join(lines)


def cmd_crm_show(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.crm.phones import PhoneError, to_e164
    from callcenter.crm.repository import CustomerRepository

    region = args.region or settings.crm.default_region
    try:
        e164 = to_e164(args.phone, region)
    except PhoneError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if e164 is None:
        raise CliError(f"{args.phone!r} is a withheld number", EXIT_USAGE)

    async def run(db: Any) -> int:
        await _require_schema(db)
        card = await CustomerRepository(db.engine, default_region=region, interactions=args.interactions).lookup(e164)
        if card is None:
            print(f"no customer with phone {e164}", file=sys.stderr)
            return EXIT_FAIL
        print(json.dumps(card.to_dict(), ensure_ascii=False, indent=2) if args.format == "json" else _format_card(card))
        return EXIT_OK

    return asyncio.run(_with_db(settings, run))


async def _require_schema(db: Any) -> None:
    from callcenter.storage.db import current_revision

    if await current_revision(db.engine) is None:
        raise CliError("the database has no schema yet: run `callcenter db upgrade` first")


# --- run -----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from callcenter.app import run_daemon

    return asyncio.run(run_daemon(settings, record=Path(args.record) if args.record else None, migrate=args.migrate))


# --- parser ------------------------------------------------------------------------------------


def _lazy(
    module: str, attr: str = "run", *, with_settings: bool = False
) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        fn = getattr(importlib.import_module(module), attr)
        return int((fn(args, settings) if with_settings else fn(args)) or 0)

    return run


# Subcommands whose module defines add_arguments(parser) and run(args, settings).
_MODULE_COMMANDS = (
    ("rules", "callcenter.routing.cli", "routing rules: check, explain, schema, reload"),
    ("report", "callcenter.analytics.reports", "analyst reports: kpi, abandons, agents, fcr, nps, callbacks"),
    ("token", "callcenter.api.cli", "API tokens: create, list, revoke"),
    ("demo", "callcenter.demo", "run the whole product against a simulated PBX (zero set-up)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callcenter",
        description="Call-center controller for Asterisk and FreeSWITCH: CRM-aware routing, IVR, overflow, "
        "supervisor API and a per-step journey of every call in PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"callcenter {__version__}")
    parser.add_argument("--config", metavar="PATH", help="settings file (default: $CALLCENTER_CONFIG, "
                        "else config/callcenter.yaml if present)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override the settings")
    parser.add_argument("--log-format", choices=["text", "json"], help="text (default) or JSON lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the controller daemon (connects to the configured PBXs)")
    run.add_argument("--record", metavar="FILE", help="append the raw PBX traffic to FILE (replayable trace)")
    run.add_argument("--migrate", action="store_true", help="upgrade the database schema before starting")
    run.set_defaults(func=cmd_run, daemon=True)

    db = sub.add_parser("db", help="database schema migrations")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", help="migrate to the newest schema (or REVISION)")
    up.add_argument("revision", nargs="?", default="head")
    down = dbsub.add_parser("downgrade", help="migrate down to REVISION ('base' removes everything)")
    down.add_argument("revision")
    dbsub.add_parser("current", help="print the schema revision")
    db.set_defaults(func=cmd_db)

    crm = sub.add_parser("crm", help="customer database: import, show")
    crmsub = crm.add_subparsers(dest="crm_command", required=True, metavar="ACTION")
    imp = crmsub.add_parser("import", help="import customers from a CSV file (format in the README)")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
    imp.add_argument("--skip-invalid", action="store_true", help="write the valid rows even if some are rejected")
    imp.add_argument("--region", help="ISO country for numbers without country code (default: settings)")
    imp.add_argument("--max-errors", type=int, default=50, help="rejected rows to print (default 50)")
    imp.set_defaults(func=cmd_crm_import)
    show = crmsub.add_parser("show", help="print the customer card for a phone number")
    show.add_argument("phone")
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.add_argument("--region")
    show.add_argument("--interactions", type=int, default=5, help="how many recent interactions (default 5)")
    show.set_defaults(func=cmd_crm_show)

    try:
        replay_mod = importlib.import_module("callcenter.pbx.replay")
    except ImportError:  # pragma: no cover - module always ships; keeps the CLI usable mid-refactor
        replay_mod = None
    if replay_mod is not None:
        replay = sub.add_parser("replay", help="replay a recorded PBX trace: normalized events or call summaries")
        replay_mod.add_arguments(replay)
        replay.set_defaults(func=_lazy("callcenter.pbx.replay"), needs_settings=False)
    for name, module, help_text in _MODULE_COMMANDS:
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text)
        mod.add_arguments(p)
        p.set_defaults(func=_lazy(module, with_settings=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        setup_logging("INFO", args.log_format or "text")
        print(f"callcenter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # One-shot commands print their results; their logs stay quiet unless asked for.
    level = args.log_level or (settings.logging.level if getattr(args, "daemon", False) else "WARNING")
    setup_logging(level, args.log_format or settings.logging.format)
    try:
        return int(args.func(args, settings))
    except CliError as exc:
        print(f"callcenter: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"callcenter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if getattr(exc, "errno", None) is not None and "connect" in str(exc).lower():
            print(f"callcenter: cannot reach the database: {exc}", file=sys.stderr)
            return EXIT_FAIL
        raise
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
