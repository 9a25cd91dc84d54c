"""Domain commands -> Asterisk AMI actions / AsyncAGI commands (pure, no I/O).

``plan(cmd, channel=...)`` returns the steps that carry out one ``Command``, in order:
``AgiCommand`` (sent with ``Action: AGI`` to a channel sitting in ``AGI(agi:async)``; its result
arrives later as ``AsyncAGIExec`` with the same ``CommandId``) or ``AmiAction`` (any other
manager action). Every shape here mirrors a SEND frame that worked against Asterisk 22.10.1 in
``tests/fixtures/asterisk`` (asyncagi_ivr, overflow_redirect, redirect_flow, whisper_barge,
queue_pause_reason, status_queries); the unit tests compare them byte for byte.

Safety: AMI is a line protocol, so a CR/LF inside a header value would end the header and let
the rest be read as further headers or a second action. Identifiers (channels, interfaces,
queues, prompts, variable names, dialplan targets) are validated and rejected with
``ValueError``; free text (caller display names, variable values, pause reasons, member names)
has its control characters replaced by spaces. AGI arguments are additionally quoted the way
res_agi's ``parse_args`` reads them (double quotes, backslash escapes), so a name like
``A" ANSWER`` stays one argument of one command.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from callcenter.domain.commands import (
    AddQueueMember,
    Answer,
    CollectDigits,
    Command,
    HangUp,
    MoveToQueue,
    Originate,
    PauseAgent,
    PlayPrompt,
    ReleaseCall,
    RemoveQueueMember,
    RouteToQueue,
    SetDisplayName,
    SetVariable,
    StartSpy,
    StopSpy,
)
from callcenter.domain.events import SpyMode

__all__ = [
    "AgiCommand",
    "AmiAction",
    "DialplanNames",
    "Step",
    "agi_quote",
    "clean_text",
    "originate_value",
    "plan",
    "spy_target",
]


@dataclass(frozen=True, slots=True)
class AmiAction:
    """One manager action. ``headers`` is ordered and may repeat a key (Originate ``Variable``);
    the client adds ``ActionID``."""

    name: str
    headers: tuple[tuple[str, str], ...]

    def header(self, key: str) -> str | None:
        for k, v in self.headers:
            if k == key:
                return v
        return None

    def to_bytes(self, action_id: str | None = None) -> bytes:
        lines = [f"Action: {self.name}"]
        if action_id is not None:
            lines.append(f"ActionID: {action_id}")
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass(frozen=True, slots=True)
class AgiCommand:
    """One AsyncAGI command for the call's channel; ``command_id`` comes back in AsyncAGIExec."""

    command: str
    command_id: str

    def as_action(self, channel: str) -> AmiAction:
        return AmiAction(
            "AGI",
            (("Channel", _ident(channel, "channel")), ("Command", self.command), ("CommandID", self.command_id)),
        )


Step = AgiCommand | AmiAction


@dataclass(frozen=True, slots=True)
class DialplanNames:
    """Where the shipped dialplan (dialplans/asterisk/extensions_callcenter.conf) lives."""

    queue_context: str = "cc-queue"
    spy_context: str = "cc-spy"
    # Originate ``Timeout`` for supervisor legs, ms (whisper_barge used 20000).
    spy_ring_timeout_ms: int = 20000
    # Variables the dialplan reads after ``ASYNCAGI BREAK`` (asyncagi_ivr: CC_QUEUE, CC_PRIO).
    queue_variable: str = "CC_QUEUE"
    priority_variable: str = "CC_PRIO"
    node_variable: str = "CC_NODE"


DEFAULT_NAMES = DialplanNames()

# -- validation / quoting ----------------------------------------------------------------------
_CHANNEL = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/[A-Za-z0-9_.@:+#*;/-]+$")
_QUEUE = re.compile(r"^[a-z][A-Za-z0-9_.-]+$")  # cc-queue matches ``_[a-z].``: lower first + 1 more
_VARNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\([A-Za-z0-9_,-]*\))?$")
_PROMPT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
_DIGITS = re.compile(r"^[0-9*#]*$")
_DIALPLAN_WORD = re.compile(r"^[A-Za-z0-9_+*#.-]+$")
_AGI_SAFE = re.compile(r"^[A-Za-z0-9_./:@+=,()-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Asterisk channel names end in ``-<8 hex>`` (PJSIP/1001-00000001); interfaces do not.
_CHANNEL_INSTANCE = re.compile(r"-[0-9a-f]{8}$")


def _ident(value: str, what: str, pattern: re.Pattern[str] = _CHANNEL) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def clean_text(value: str) -> str:
    """Free text for an AMI header / AGI argument: control characters (CR, LF, NUL, tab...)
    become spaces, so it can never end a header line."""
    return _CONTROL.sub(" ", value)


def agi_quote(value: str) -> str:
    """Quote one AGI argument for res_agi's parser: bare if it is plainly safe, else inside
    double quotes with ``\\`` and ``"`` backslash-escaped. Empty -> ``""`` (STREAM FILE's
    escape digits in the asyncagi_ivr trace)."""
    value = clean_text(value)
    if value and _AGI_SAFE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _channel(cmd: Command, channel: str | None) -> str:
    target = channel or cmd.channel
    if not target:
        raise ValueError(f"{cmd.kind}: no channel to act on")
    return _ident(target, "channel")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _set_var(name: str, value: str, command_id: str) -> AgiCommand:
    return AgiCommand(f"SET VARIABLE {_ident(name, 'variable name', _VARNAME)} {agi_quote(value)}", command_id)


def _split_destination(destination: str) -> tuple[str, str, str]:
    """``context,exten[,priority]`` (Goto syntax) -> (context, exten, priority)."""
    parts = destination.split(",")
    if len(parts) == 2:
        parts.append("1")
    if len(parts) != 3:
        raise ValueError(f"invalid originate destination (want context,exten[,priority]): {destination!r}")
    context, exten, priority = (p.strip() for p in parts)
    for part in (context, exten):
        _ident(part, "dialplan target", _DIALPLAN_WORD)
    if not priority.isdigit():
        raise ValueError(f"invalid priority in {destination!r}")
    return context, exten, priority


def originate_value(value: str) -> str:
    """A value inside ``Variable: name=value``: manager.c splits the header with
    AST_STANDARD_APP_ARGS, where ``,`` separates pairs and quotes, brackets, parentheses and
    backslashes are syntax; a backslash makes each of them literal."""
    return re.sub(r'([\\,"()\[\]])', r"\\\1", clean_text(value))


def _caller_id_number(endpoint: str) -> str:
    # ``PJSIP/1009`` -> ``1009`` for the supervisor leg's CallerID (whisper_barge: <1009>).
    return endpoint.rpartition("/")[2]


def spy_target(target: str) -> str:
    """ChanSpy matches its first argument as a channel-name *prefix*: ``PJSIP/1001`` would also
    spy on ``PJSIP/10010-...``. An interface therefore gets a trailing ``-`` so only its own
    channels (``PJSIP/1001-00000001``) match; a full channel name is used as is."""
    _ident(target, "spy target")
    return target if _CHANNEL_INSTANCE.search(target) else target + "-"


# -- the mapping -------------------------------------------------------------------------------
def plan(
    cmd: Command,
    *,
    channel: str | None = None,
    names: DialplanNames = DEFAULT_NAMES,
    lease_s: int | None = None,
) -> list[Step]:
    """The AMI/AGI steps for ``cmd``. ``channel`` (default ``cmd.channel``) is the caller leg
    for call commands; AGI steps must go to a channel that is in ``AGI(agi:async)``.

    ``lease_s``: renew the dialplan's fail-open guard before the command. [cc-inbound] arms
    ``TIMEOUT(absolute)`` (10 s) before ``AGI(agi:async)``; a live controller keeps it from
    firing by setting it again with every AGI command -- to ``lease_s`` plus the command's own
    wait (GET DATA timeout). If the controller dies mid-IVR, the call still reaches the
    default queue within the lease. Plans ending in ``ASYNCAGI BREAK`` need no lease: the
    dialplan clears the timeout right after the AGI returns."""
    steps = _plan(cmd, channel=channel, names=names)
    agi = [s for s in steps if isinstance(s, AgiCommand)]
    if lease_s is None or not agi or agi[-1].command == "ASYNCAGI BREAK":
        return steps
    wait_s = -(-cmd.timeout_ms // 1000) if isinstance(cmd, CollectDigits) else 0
    lease = AgiCommand(f"SET VARIABLE TIMEOUT(absolute) {int(lease_s) + wait_s}", f"{cmd.command_id}/lease")
    return [lease, *steps]


def _plan(cmd: Command, *, channel: str | None, names: DialplanNames) -> list[Step]:
    cid = cmd.command_id
    if isinstance(cmd, Answer):
        return [AgiCommand("ANSWER", cid)]
    if isinstance(cmd, PlayPrompt):
        _ident(cmd.prompt, "prompt", _PROMPT)
        _ident(cmd.interrupt_digits, "interrupt digits", _DIGITS)
        return [AgiCommand(f"STREAM FILE {cmd.prompt} {agi_quote(cmd.interrupt_digits)}", cid)]
    if isinstance(cmd, CollectDigits):
        _ident(cmd.prompt, "prompt", _PROMPT)
        if cmd.max_digits < 1 or cmd.timeout_ms < 0:
            raise ValueError(f"invalid digit collection: max_digits={cmd.max_digits} timeout_ms={cmd.timeout_ms}")
        steps: list[Step] = []
        if cmd.node:
            # Announce the node on the channel: the translator turns the VarSet into
            # IvrNodeEntered, so controller-driven journeys are recorded from the PBX side too.
            steps.append(_set_var(names.node_variable, cmd.node, f"{cid}/node"))
        steps.append(AgiCommand(f"GET DATA {cmd.prompt} {int(cmd.timeout_ms)} {int(cmd.max_digits)}", cid))
        return steps
    if isinstance(cmd, SetDisplayName):
        # asyncagi_ivr: ``SET VARIABLE CALLERID(name) "VIP Ivanova"`` -> NewCallerid, and the
        # agents' AgentCalled/phones show the new name.
        return [_set_var("CALLERID(name)", cmd.name, cid)]
    if isinstance(cmd, SetVariable):
        return [_set_var(cmd.name, cmd.value, cid)]
    if isinstance(cmd, RouteToQueue):
        # asyncagi_ivr: SET VARIABLE CC_QUEUE, SET VARIABLE CC_PRIO, ASYNCAGI BREAK; the dialplan
        # after AGI(agi:async) reads them. The BREAK carries the command's own id: its
        # AsyncAGIExec is the command's completion.
        queue = _ident(cmd.queue, "queue", _QUEUE)
        return [
            _set_var(names.queue_variable, queue, f"{cid}/queue"),
            _set_var(names.priority_variable, str(int(cmd.priority)), f"{cid}/prio"),
            AgiCommand("ASYNCAGI BREAK", cid),
        ]
    if isinstance(cmd, ReleaseCall):
        # Back to the dialplan's own path: with CC_QUEUE empty, [cc-inbound] continues into the
        # default queue (asyncagi_no_controller phase B: a bare BREAK -> Queue(support)).
        return [
            _set_var(names.queue_variable, "", f"{cid}/queue"),
            AgiCommand("ASYNCAGI BREAK", cid),
        ]
    if isinstance(cmd, MoveToQueue):
        # overflow_redirect / redirect_flow: Setvar before Redirect; Queue() reads QUEUE_PRIO and
        # QUEUE_MIN_PENALTY itself. A min penalty is only touched when given (an empty
        # QUEUE_* value makes app_queue log "Invalid value").
        target = _channel(cmd, channel)
        queue = _ident(cmd.queue, "queue", _QUEUE)
        steps = [
            AmiAction("Setvar", (("Channel", target), ("Variable", "QUEUE_PRIO"), ("Value", str(int(cmd.priority)))))
        ]
        if cmd.min_penalty is not None:
            steps.append(
                AmiAction(
                    "Setvar",
                    (("Channel", target), ("Variable", "QUEUE_MIN_PENALTY"), ("Value", str(int(cmd.min_penalty)))),
                )
            )
        steps.append(
            AmiAction(
                "Redirect",
                (("Channel", target), ("Context", names.queue_context), ("Exten", queue), ("Priority", "1")),
            )
        )
        return steps
    if isinstance(cmd, HangUp):
        return [AmiAction("Hangup", (("Channel", _channel(cmd, channel)), ("Cause", str(int(cmd.cause)))))]
    if isinstance(cmd, StartSpy):
        endpoint = _ident(cmd.supervisor_endpoint, "supervisor endpoint")
        mode = SpyMode(cmd.mode)
        supervisor = _caller_id_number(endpoint)
        # whisper_barge: Originate the supervisor phone into the spy context, exten = mode,
        # Async (the result comes as OriginateResponse), variables tell the dialplan (and the
        # translator) the mode; CC_SPY_TARGET names whom to spy on.
        return [
            AmiAction(
                "Originate",
                (
                    ("Channel", endpoint),
                    ("Context", names.spy_context),
                    ("Exten", mode.value),
                    ("Priority", "1"),
                    ("CallerID", f'"Supervisor {mode.value}" <{supervisor}>'),
                    ("Timeout", str(int(names.spy_ring_timeout_ms))),
                    ("Async", "true"),
                    ("Variable", f"CC_SPY_MODE={mode.value}"),
                    ("Variable", f"CC_SUPERVISOR={supervisor}"),
                    ("Variable", f"CC_SPY_TARGET={spy_target(cmd.target)}"),
                ),
            )
        ]
    if isinstance(cmd, StopSpy):
        # whisper_barge: ``Hangup`` of the spyer channel; ChanSpyStop follows.
        return [AmiAction("Hangup", (("Channel", _ident(cmd.spyer_channel, "spyer channel")), ("Cause", "16")))]
    if isinstance(cmd, PauseAgent):
        agent = _ident(cmd.agent, "agent interface")
        headers: list[tuple[str, str]] = []
        if cmd.queue is not None:
            headers.append(("Queue", _ident(cmd.queue, "queue", _QUEUE)))
        headers += [("Interface", agent), ("Paused", _bool(cmd.paused))]
        if cmd.reason:
            headers.append(("Reason", clean_text(cmd.reason)))
        return [AmiAction("QueuePause", tuple(headers))]
    if isinstance(cmd, AddQueueMember):
        agent = _ident(cmd.agent, "agent interface")
        headers = [
            ("Queue", _ident(cmd.queue, "queue", _QUEUE)),
            ("Interface", agent),
            ("Penalty", str(int(cmd.penalty))),
            ("Paused", _bool(cmd.paused)),
        ]
        if cmd.member_name:
            headers.append(("MemberName", clean_text(cmd.member_name)))
        headers.append(("StateInterface", agent))
        return [AmiAction("QueueAdd", tuple(headers))]
    if isinstance(cmd, RemoveQueueMember):
        return [
            AmiAction(
                "QueueRemove",
                (("Queue", _ident(cmd.queue, "queue", _QUEUE)), ("Interface", _ident(cmd.agent, "agent interface"))),
            )
        ]
    if isinstance(cmd, Originate):
        endpoint = _ident(cmd.endpoint, "endpoint")
        context, exten, priority = _split_destination(cmd.destination)
        headers = [("Channel", endpoint), ("Context", context), ("Exten", exten), ("Priority", priority)]
        if cmd.caller_id:
            headers.append(("CallerID", clean_text(cmd.caller_id)))
        headers += [("Timeout", str(int(cmd.timeout_s) * 1000)), ("Async", "true")]
        for name, value in cmd.variables:
            _ident(name, "variable name", _VARNAME)
            headers.append(("Variable", f"{name}={originate_value(value)}"))
        return [AmiAction("Originate", tuple(headers))]
    raise ValueError(f"no Asterisk mapping for command {cmd.kind!r}")


def agi_steps(steps: Sequence[Step]) -> bool:
    """True if the plan needs the call to be in AsyncAGI."""
    return any(isinstance(s, AgiCommand) for s in steps)
