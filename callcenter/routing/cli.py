"""``callcenter rules``: check, explain, schema, reload.

- ``check FILE``: exit 0 with a one-line summary, or exit 1 with every problem on its own
  line (``file:line:column: field.path: reason``). Warnings (legal but suspicious) go to
  stderr; ``--strict`` makes them fatal.
- ``explain FILE --caller N --did D``: the decision for a hypothetical call, and why: every
  rule tried with the condition that failed. The customer comes from ``--customer-json``
  (the shape ``callcenter crm show --format json`` prints; ``null`` = unknown caller) or from
  the CRM database of the settings; a failing database lookup is shown as what production does
  then: the fallback with ``lookup_failed``.
- ``schema``: the JSON Schema of the rules file (also committed as config/routing.schema.json).
- ``reload``: SIGHUP to the running daemon (pid in ``<user data dir>/callcenter.pid``), after
  checking the configured rules file, since the daemon would refuse an invalid one anyway.

Wired into the main CLI with ``add_arguments(parser)`` and ``run(args, settings)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from callcenter.routing.decide import CallInfo, Decision, LiveState, QueueLive, decide
from callcenter.routing.loader import load_rules_checked
from callcenter.routing.rules import WEEKDAYS, RuleSet, json_schema_text
from callcenter.yamlconf import ConfigError

if TYPE_CHECKING:
    from callcenter.crm.repository import CustomerCard
    from callcenter.settings import Settings

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
PID_FILE_NAME = "callcenter.pid"


def default_pid_file() -> Path:
    """Where the daemon writes its pid (and where ``rules reload`` looks for it)."""
    return Path(platformdirs.user_data_dir("callcenter")) / PID_FILE_NAME


class _UsageError(Exception):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="rules_command", required=True, metavar="ACTION")

    check = sub.add_parser("check", help="validate a rules file")
    check.add_argument("file")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")

    ex = sub.add_parser("explain", help="show the routing decision for a call, and why")
    ex.add_argument("file")
    ex.add_argument("--caller", required=True, help="caller id as the PBX would send it ('anonymous' = withheld)")
    ex.add_argument("--did", required=True, help="dialled number ('' for none)")
    ex.add_argument("--at", metavar="ISO8601", help="time of the call (default: now; no offset = the rules' zone)")
    ex.add_argument(
        "--customer-json",
        metavar="JSON",
        help="the customer card instead of a database lookup ('null' = unknown caller, @FILE reads a file)",
    )
    ex.add_argument(
        "--live-json",
        metavar="JSON",
        help='live queue state, e.g. \'{"sales": {"available": 0, "waiting": 7, "logged_in": 3}}\' (@FILE too)',
    )
    ex.add_argument("--lookup-failed", action="store_true", help="as if the CRM lookup had failed")
    ex.add_argument("--pbx", help="PBX node name (default: the first configured)")
    ex.add_argument("--pbx-type", choices=["asterisk", "freeswitch"], help="PBX type (default: from the settings)")
    ex.add_argument("--format", choices=["text", "json"], default="text")

    sub.add_parser("schema", help="print the JSON Schema of the rules file (for editors)")

    rl = sub.add_parser("reload", help="tell the running daemon to re-read its rules (SIGHUP)")
    rl.add_argument("--pid-file", help=f"default: {PID_FILE_NAME} in the user data directory")
    rl.add_argument("--no-check", action="store_true", help="signal even if the configured rules file is invalid")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        match args.rules_command:
            case "check":
                return _check(args)
            case "explain":
                return _explain(args, settings)
            case "schema":
                print(json_schema_text(), end="")
                return EXIT_OK
            case "reload":
                return _reload(args, settings)
    except _UsageError as exc:
        print(f"callcenter rules: {exc}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(f"unknown rules command {args.rules_command!r}")


# --- check -----------------------------------------------------------------------------------------


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def summary(rules: RuleSet) -> str:
    nodes = sum(len(m.nodes) for m in rules.ivr.values())
    return (
        f"{_n(len(rules.queues), 'queue')}, {_n(len(rules.ivr), 'menu')} ({_n(nodes, 'node')}), "
        f"{_n(len(rules.rules), 'rule')} + fallback, {_n(len(rules.calendars), 'calendar')}, "
        f"{_n(len(rules.groups), 'group')}; version {rules.version}"
    )


def _check(args: argparse.Namespace) -> int:
    try:
        rules, warns = load_rules_checked(args.file)
    except ConfigError as exc:
        for line in _problem_lines(exc):
            print(line, file=sys.stderr)
        return EXIT_FAIL
    for w in warns:
        print(f"{w} (warning)", file=sys.stderr)
    if warns and args.strict:
        print(f"{args.file}: {len(warns)} warning(s), refused (--strict)", file=sys.stderr)
        return EXIT_FAIL
    print(f"{args.file}: OK: {summary(rules)}")
    return EXIT_OK


def _problem_lines(exc: ConfigError) -> list[str]:
    return [str(p) for p in exc.problems] if exc.problems else [str(exc)]


# --- explain ---------------------------------------------------------------------------------------


def _json_arg(value: str, what: str) -> Any:
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise _UsageError(f"{what}: cannot read {value[1:]}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _UsageError(f"{what}: not JSON: {exc}") from None


def customer_from_json(data: Any) -> CustomerCard | None:
    """A ``CustomerCard`` from the JSON ``crm show --format json`` prints (missing fields take
    the CRM's defaults); ``None`` stays None (unknown caller)."""
    from callcenter.crm.repository import CustomerCard, InteractionView

    if data is None:
        return None
    if not isinstance(data, dict):
        raise _UsageError("--customer-json: expected a JSON object (or null)")
    known = {
        "id", "name", "tier", "segment", "language", "tags", "assigned_agent_id", "assigned_agent",
        "stage", "notes", "do_not_call", "phones", "interactions",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise _UsageError(f"--customer-json: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        phones = tuple(
            (p["e164"], p.get("label")) if isinstance(p, dict) else (str(p), None) for p in data.get("phones") or ()
        )
        interactions = tuple(
            InteractionView(
                at=datetime.fromisoformat(i["at"]),
                channel=i.get("channel", "phone"),
                direction=i.get("direction", "inbound"),
                outcome=i.get("outcome"),
                agent=i.get("agent"),
                summary=i.get("summary"),
                call_id=i.get("call_id"),
            )
            for i in data.get("interactions") or ()
        )
        tags = data.get("tags") or ()
        return CustomerCard(
            id=int(data.get("id") or 0),
            name=str(data.get("name") or ""),
            tier=str(data.get("tier") or "standard"),
            segment=data.get("segment"),
            language=data.get("language"),
            tags=tuple(str(t) for t in ([tags] if isinstance(tags, str) else tags)),
            assigned_agent_id=data.get("assigned_agent_id"),
            assigned_agent=data.get("assigned_agent"),
            stage=data.get("stage"),
            notes=data.get("notes"),
            do_not_call=bool(data.get("do_not_call", False)),
            phones=phones,
            interactions=interactions,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _UsageError(f"--customer-json: {exc}") from None


def live_from_json(data: Any) -> LiveState:
    if data is None:
        return LiveState()
    if not isinstance(data, dict):
        raise _UsageError("--live-json: expected an object of queue name -> counters")
    queues: dict[str, QueueLive] = {}
    for name, counters in data.items():
        if not isinstance(counters, dict):
            raise _UsageError(f"--live-json: {name}: expected an object of counters")
        try:
            queues[str(name)] = QueueLive(**counters)
        except TypeError as exc:
            raise _UsageError(f"--live-json: {name}: {exc}") from None
    return LiveState(queues)


def _parse_at(value: str | None, rules: RuleSet) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise _UsageError(f"--at: not an ISO 8601 time: {value!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=rules.zone)


async def _lookup(settings: Settings, number: str) -> CustomerCard | None:
    from callcenter.crm.repository import CustomerRepository
    from callcenter.storage.db import open_database

    db = await open_database(settings)
    try:
        return await CustomerRepository(db.engine, default_region=settings.crm.default_region).lookup(number)
    finally:
        await db.close()


def _pbx(args: argparse.Namespace, settings: Settings) -> tuple[str | None, str | None]:
    name, kind = args.pbx, args.pbx_type
    configured = {p.name: p.type for p in settings.pbx}
    if name is None and settings.pbx:
        name = settings.pbx[0].name
    if kind is None and name in configured:
        kind = configured[name]
    return name, kind


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    try:
        rules, _warns = load_rules_checked(args.file)
    except ConfigError as exc:
        for line in _problem_lines(exc):
            print(line, file=sys.stderr)
        return EXIT_FAIL
    at = _parse_at(args.at, rules)
    live = live_from_json(_json_arg(args.live_json, "--live-json") if args.live_json else None)
    pbx, pbx_type = _pbx(args, settings)
    call = CallInfo.from_caller(
        args.caller or None, args.did or None, at, pbx=pbx, pbx_type=pbx_type, region=settings.crm.default_region
    )
    lookup_failed = bool(args.lookup_failed)
    lookup_error: str | None = None
    source = "--customer-json"
    customer: CustomerCard | None = None
    if lookup_failed:
        source = "--lookup-failed"
    elif args.customer_json is not None:
        customer = customer_from_json(_json_arg(args.customer_json, "--customer-json"))
    elif call.caller_e164 is None:
        source = "withheld" if call.withheld else "not a phone number"
    else:
        source = "database"
        try:
            customer = asyncio.run(_lookup(settings, call.caller_e164))
        except ConfigError:
            raise
        except Exception as exc:  # what production does: the fallback routes a failed lookup
            lookup_failed, lookup_error = True, f"{type(exc).__name__}: {exc}"
            print(f"callcenter rules: CRM lookup failed ({lookup_error}); showing the fallback", file=sys.stderr)
    decision = decide(call, customer, live, rules, lookup_failed=lookup_failed)
    if args.format == "json":
        out = {
            **decision.to_dict(),
            "file": str(args.file),
            "call": {
                "caller": call.caller,
                "caller_e164": call.caller_e164,
                "withheld": call.withheld,
                "did": call.did,
                "at": call.at.isoformat(),
                "local_time": call.at.astimezone(rules.zone).isoformat(),
                "pbx": call.pbx,
                "pbx_type": call.pbx_type,
            },
            "customer": customer.to_dict() if customer is not None else None,
            "customer_source": source,
            "lookup_error": lookup_error,
        }
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(explain_text(decision, rules, call, customer, file=str(args.file), source=source))
    return EXIT_OK


def explain_text(
    decision: Decision,
    rules: RuleSet,
    call: CallInfo,
    customer: CustomerCard | None,
    *,
    file: str,
    source: str,
) -> str:
    local = call.at.astimezone(rules.zone)
    lines = [f"rules:    {file}  (version {rules.version})"]
    who = call.caller_e164 or call.caller or "-"
    if call.withheld:
        who = "withheld"
    lines.append(
        f"call:     from {who} to DID {call.did or '-'} at {WEEKDAYS[local.weekday()]} "
        f"{local:%Y-%m-%d %H:%M} {rules.timezone}" + (f" via {call.pbx}" if call.pbx else "")
    )
    if decision.lookup_failed:
        lines.append(f"customer: CRM lookup failed ({source})")
    elif customer is None:
        lines.append(f"customer: unknown caller ({source})")
    else:
        extra = ", ".join(
            f"{k} {v}"
            for k, v in (
                ("segment", customer.segment),
                ("language", customer.language),
                ("stage", customer.stage),
                ("assigned agent", customer.assigned_agent or customer.assigned_agent_id),
                ("tags", ",".join(customer.tags)),
            )
            if v
        )
        lines.append(
            f"customer: #{customer.id} {customer.name}, tier {customer.tier}"
            + (f", {extra}" if extra else "")
            + f" ({source})"
        )
    lines.append("rules tried:")
    width = max((len(t.rule_id) for t in decision.trace), default=0)
    marks = {"matched": "MATCH", "no_match": "no", "skipped": "SKIP", "not_evaluated": "-", "ivr": "ivr"}
    for t in decision.trace:
        cond = f"{t.condition}: " if t.condition else ""
        lines.append(f"  {marks[t.result]:<5} {t.rule_id:<{width}}  {cond}{t.reason}")
    d = decision
    head = f"decision: rule {d.rule_id}"
    if d.action == "queue":
        head += f" -> queue {d.queue} (PBX queue {d.pbx_queue}), priority {d.priority}"
    elif d.action == "ivr":
        head += f" -> IVR menu {d.ivr_menu}, node {d.ivr_node}"
    elif d.action == "callback":
        head += f" -> callback from queue {d.callback_queue}"
    elif d.action == "voicemail":
        head += f" -> voicemail {d.mailbox}"
    else:
        head += " -> hang up"
    lines.append(head)
    if d.closed:
        when = (
            f", opens {d.next_open.astimezone(rules.zone):%a %Y-%m-%d %H:%M} {rules.timezone}"
            if d.next_open
            else ", no opening ahead"
        )
        lines.append(f"  closed:        calendar {d.closed_calendar}{when}")
    if d.announcement:
        lines.append(f"  announcement:  {d.announcement}")
    if d.display_name:
        lines.append(f"  display name:  {d.display_name}")
    if d.sticky_s:
        agent = d.sticky_agent or d.sticky_agent_id
        lines.append(f"  sticky:        assigned agent {agent} rings {d.sticky_s} s first")
    if d.ivr is not None:
        lines.append(
            f"  first prompt:  {d.ivr.prompt} (up to {d.ivr.max_digits} digit(s), {d.ivr.timeout_s:g} s timeout)"
        )
    return "\n".join(lines)


# --- reload ----------------------------------------------------------------------------------------


def _looks_like_callcenter(pid: int) -> bool:
    """Guard against a stale pid file whose pid now belongs to another program (SIGHUP would
    terminate most programs). Where the command line is readable (Linux), it must mention
    callcenter; elsewhere the pid file is trusted."""
    cmdline = Path("/proc") / str(pid) / "cmdline"
    try:
        data = cmdline.read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs on this system: cannot tell
    except OSError:
        return True
    return b"callcenter" in data


def _reload(args: argparse.Namespace, settings: Settings) -> int:
    if not hasattr(signal, "SIGHUP"):
        print("callcenter rules reload: SIGHUP is not available on this platform", file=sys.stderr)
        return EXIT_FAIL
    path = settings.rules.path
    if path is not None and not args.no_check:
        try:
            load_rules_checked(path)
        except ConfigError as exc:
            for line in _problem_lines(exc):
                print(line, file=sys.stderr)
            print(
                f"callcenter rules reload: not signalling: {path} is invalid and the daemon would keep its current "
                "rules (fix the file, or --no-check)",
                file=sys.stderr,
            )
            return EXIT_FAIL
    pid_file = Path(args.pid_file) if args.pid_file else default_pid_file()
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        print(
            f"callcenter rules reload: no running daemon: {pid_file} does not exist "
            "(is `callcenter run` running, as this user?)",
            file=sys.stderr,
        )
        return EXIT_FAIL
    except OSError as exc:
        print(f"callcenter rules reload: cannot read {pid_file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        pid = int(text)
        if pid <= 0:
            raise ValueError
    except ValueError:
        print(f"callcenter rules reload: {pid_file} does not hold a process id: {text[:40]!r}", file=sys.stderr)
        return EXIT_FAIL
    if not _looks_like_callcenter(pid):
        print(
            f"callcenter rules reload: process {pid} (from {pid_file}) is not a callcenter daemon; stale pid file?",
            file=sys.stderr,
        )
        return EXIT_FAIL
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"callcenter rules reload: no process {pid}: stale pid file {pid_file}", file=sys.stderr)
        return EXIT_FAIL
    except PermissionError:
        print(f"callcenter rules reload: not allowed to signal process {pid} (another user's daemon?)", file=sys.stderr)
        return EXIT_FAIL
    print(f"sent SIGHUP to the daemon (pid {pid}); it logs whether the new rules were accepted")
    return EXIT_OK
