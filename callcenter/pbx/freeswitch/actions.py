"""Domain commands -> FreeSWITCH ESL commands (pure, no I/O).

``plan(cmd, uuid=...)`` returns the steps that carry out one ``Command``, in order:
``Execute`` (``sendmsg <uuid>`` ``call-command: execute`` of a dialplan application on the
caller's channel, with ``event-lock``; it runs later and completes with a
``CHANNEL_EXECUTE_COMPLETE`` whose ``Application-UUID`` is the ``Event-UUID`` the adapter sends)
or ``Api`` (``api <command>``; ``background`` ones go out as ``bgapi`` with our own Job-UUID and
end with a BACKGROUND_JOB event). Every shape mirrors a SENT frame that worked against
FreeSWITCH 1.10.12 in tests/fixtures/freeswitch (sendmsg_ivr, park_controller_flow,
overflow_transfer, whisper_barge, api_replies, agent_status_break); the unit tests compare them.

Where things go (``DialplanNames``, matching dialplans/freeswitch/dialplan/callcenter.xml):

* queues: ``uuid_transfer <uuid> cc_queue_<name> XML callcenter``; the extension runs
  ``callcenter <name>@<domain>`` (mod_callcenter queue names need the domain: ``queue list
  members sales`` finds nothing, ``sales@default`` does). A queue may be given as ``sales`` or
  ``sales@default``; another domain than the dialplan's is refused. The queue extension first
  cancels the fail-open timer (``sched_cancel``).
* ``ReleaseCall``: ``uuid_transfer <uuid> cc_default XML callcenter`` -- the dialplan's default
  queue, the path a call takes when the controller does not act.
* ``MoveToQueue`` (overflow, redistribution) of a caller waiting in a queue: ``uuid_setvar`` of
  the score, then ``uuid_transfer`` to the other queue's extension. overflow_transfer: the old
  stint ends Cancel/BREAK_OUT and the new one starts 3 ms later. sendmsg is no use there:
  mod_callcenter's wait loop flushes the member's private events.

Priority (``cc_base_score``): mod_callcenter serves the member with the highest
``(now - joined_epoch) + base_score + skill_score`` first (its dispatch query, ORDER BY score
DESC), so ``cc_base_score = priority * DialplanNames.priority_step_s``: a caller with priority
p+1 is served before one with priority p unless the latter has waited ``priority_step_s``
seconds longer (default 3600: strict in practice). Priority 0 sets 0. (park_controller_flow and
sendmsg_ivr set cc_base_score 500/1000 with uuid_setvar before the transfer; it was accepted.)

Fail-open lease: the inbound extension arms ``sched_transfer +<N> cc_failopen XML callcenter``
before ``park`` (a transfer breaks park like the controller's own ``uuid_transfer`` does,
park_controller_flow). ``plan(lease_s=...)`` renews it before every ``Execute`` plan:
``sched_del <uuid>`` (the scheduler group of a sched_transfer is the channel uuid) then
``sched_transfer +<lease + the command's own wait> <uuid> cc_failopen XML callcenter``. A
controller that dies mid-IVR therefore still lets the call reach the default queue. Plans that
end in a ``uuid_transfer`` need no lease: every queue extension runs ``sched_cancel`` first.

Supervisors (``StartSpy``): ``bgapi originate {...}<endpoint> &eavesdrop(<caller uuid>)``, as
in whisper_barge. Per the RTP measurements (checks/whisper_audio): eavesdrop on ``<uuid>`` with
``eavesdrop_whisper_aleg=true`` = the *other* party of ``<uuid>`` hears the supervisor, so a
whisper to the agent eavesdrops on the caller's UUID with ``whisper_aleg=true``; listen sets
both whisper variables false; barge is ``&three_way(<caller uuid>)`` (both parties hear).
``eavesdrop_enable_dtmf=false`` keeps the mode the one that was asked for (and audited): DTMF
mode keys are on by default (whisper_audio switched modes with no variable set). The spyer leg
gets ``origination_uuid`` (known before it rings) and ``cc_spy_mode``.

Agents: ``callcenter_config agent set status <agent> 'On Break'`` pauses (single quotes: the
argument is split on spaces, unquoted ``On Break`` -> ``-ERR Invalid Agent Status!``),
``Available`` unpauses. mod_callcenter's status is per agent, has no reason and no per-queue
pause: a queue or a reason is refused / dropped (documented, not guessed). Queue members are
tiers: ``tier add <queue> <agent> <level> <position>`` (level = penalty: lower levels are
offered first, overflow_transfer's level-0 agent rang before the level-1 ones), ``tier del``.

Safety: ESL is a line protocol and FreeSWITCH splits api arguments on spaces (single quotes
group, backslash escapes) and expands ``${...}`` -- including ``${api(...)}`` calls -- in
application arguments. Identifiers (uuids, queues, agents, prompts, endpoints, variable names,
extensions) are validated and refused with ``ValueError``; free text (display names, variable
values, caller ids) keeps letters, digits, spaces and plain punctuation only: quotes,
backslashes, ``$``, braces, ``%``, ``^`` and control characters are dropped.
"""

from __future__ import annotations

import re
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
    "DEFAULT_NAMES",
    "Api",
    "DialplanNames",
    "Execute",
    "Step",
    "cause_name",
    "clean_text",
    "is_uuid",
    "plan",
    "queue_extension",
    "tier_queue",
]


@dataclass(frozen=True, slots=True)
class Execute:
    """``sendmsg <uuid>`` execute ``app`` ``arg`` (event-lock on)."""

    uuid: str
    app: str
    arg: str | None = None
    event_lock: bool = True


@dataclass(frozen=True, slots=True)
class Api:
    """``api <command>``, or ``bgapi <command>`` when ``background``."""

    command: str
    background: bool = False


Step = Execute | Api


@dataclass(frozen=True, slots=True)
class DialplanNames:
    """Where the shipped dialplan (dialplans/freeswitch/dialplan/callcenter.xml) lives."""

    context: str = "callcenter"
    queue_prefix: str = "cc_queue_"
    default_extension: str = "cc_default"
    failopen_extension: str = "cc_failopen"
    queue_domain: str = "default"
    node_variable: str = "CC_NODE"
    digit_variable: str = "cc_digit"
    # play_and_get_digits: inter-digit timeout (sendmsg_ivr used 3000) and the "invalid" prompt
    digit_timeout_ms: int = 3000
    invalid_prompt: str = "silence_stream://250"
    priority_step_s: int = 3600
    # originate_timeout of supervisor legs, seconds
    spy_ring_timeout_s: int = 20


DEFAULT_NAMES = DialplanNames()

# -- validation / quoting ----------------------------------------------------------------------
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_QUEUE = re.compile(r"^(?P<name>[a-z][a-z0-9_.-]*)(?:@(?P<domain>[A-Za-z0-9_.-]+))?$")
_AGENT = re.compile(r"^[A-Za-z0-9_.@+-]+$")
_VARNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# sounds: ivr/welcome.wav, /abs/file.wav, tone_stream://%(200,0,800);loops=2, silence_stream://250
_PROMPT = re.compile(r"^[A-Za-z0-9_/][A-Za-z0-9_./:%(),;=+@-]*$")
_DIGITS = re.compile(r"^[0-9*#]*$")
# dial strings: sofia/internal/1009@127.0.0.1:5189, user/1009@default, loopback/1001/default;
# with leg variables first as in mod_callcenter contacts: [leg_timeout=15]user/1001@default
_ENDPOINT = re.compile(r"^(?:\[[A-Za-z0-9_=,.:@+-]*\])?[a-z][a-z0-9_]*/[A-Za-z0-9_.@:+;=/-]+$")
_EXTEN = re.compile(r"^[A-Za-z0-9_+*#.-]+$")
_CONTEXT = re.compile(r"^[A-Za-z0-9_.-]+$")
# free text: drop what FreeSWITCH parses (quotes, escapes, ${} expansion, %-decoding, ^^
# delimiter changes, the {} / [] of dial strings) and control characters
_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f'\"\\`$%{}\[\]^|<>]")

_CAUSES: dict[int, str] = {
    1: "UNALLOCATED_NUMBER",
    16: "NORMAL_CLEARING",
    17: "USER_BUSY",
    18: "NO_USER_RESPONSE",
    19: "NO_ANSWER",
    21: "CALL_REJECTED",
    27: "DESTINATION_OUT_OF_ORDER",
    31: "NORMAL_UNSPECIFIED",
    34: "NORMAL_CIRCUIT_CONGESTION",
    38: "NETWORK_OUT_OF_ORDER",
    41: "NORMAL_TEMPORARY_FAILURE",
    42: "SWITCH_CONGESTION",
    127: "INTERWORKING",
}


def is_uuid(value: str | None) -> bool:
    return bool(value) and _UUID.match(value or "") is not None


def _ident(value: str, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def _uuid(value: str | None, what: str) -> str:
    if not value or not is_uuid(value):
        raise ValueError(f"invalid {what} (want a channel UUID): {value!r}")
    return value


def clean_text(value: str) -> str:
    """Free text safe inside an ESL argument: characters FreeSWITCH would interpret are dropped,
    whitespace runs become one space, ends are trimmed."""
    return " ".join(_UNSAFE_TEXT.sub(" ", value).split())


def cause_name(cause: int) -> str:
    """Q.850 code -> the cause name ``uuid_kill`` takes (park_controller_flow: NORMAL_CLEARING)."""
    return _CAUSES.get(int(cause), "NORMAL_CLEARING")


def queue_extension(queue: str, names: DialplanNames = DEFAULT_NAMES) -> str:
    """``sales`` / ``sales@default`` -> ``cc_queue_sales`` (the dialplan adds the domain back)."""
    m = _QUEUE.match(queue) if isinstance(queue, str) else None
    if m is None:
        raise ValueError(f"invalid queue: {queue!r}")
    domain = m.group("domain")
    if domain is not None and domain != names.queue_domain:
        raise ValueError(f"queue {queue!r}: the dialplan's queue extensions add @{names.queue_domain}")
    return names.queue_prefix + m.group("name")


def _transfer(uuid: str, extension: str, names: DialplanNames) -> Api:
    # park_controller_flow / sendmsg_ivr: uuid_transfer <uuid> queue_sales XML public
    return Api(f"uuid_transfer {uuid} {extension} XML {names.context}")


def _set(uuid: str, name: str, value: str) -> Execute:
    # sendmsg_ivr: execute set cc_after_ivr=yes
    return Execute(uuid, "set", f"{_ident(name, 'variable name', _VARNAME)}={value}")


def _score(priority: int, names: DialplanNames) -> str:
    return str(max(0, int(priority)) * names.priority_step_s)


def _var_value(value: str) -> str:
    """A value inside an originate's ``{a=b,c=d}``: commas separate variables (escaped ``\\,``);
    spaces would end the argument (single-quoted)."""
    text = clean_text(value).replace(",", "\\,")
    return f"'{text}'" if " " in text else text


def _originate_vars(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{_ident(k, 'variable name', _VARNAME)}={_var_value(v)}" for k, v in pairs) + "}"


def _caller_id(text: str) -> tuple[str | None, str | None]:
    """``"Name" <number>`` / ``Name <number>`` / ``number`` -> (name, number)."""
    m = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', text)
    if m:
        return clean_text(m.group(1)) or None, clean_text(m.group(2)) or None
    text = clean_text(text)
    return (None, text) if re.fullmatch(r"\+?[0-9*#]+", text) else (text or None, None)


# -- the mapping -------------------------------------------------------------------------------
def plan(
    cmd: Command,
    *,
    uuid: str | None = None,
    spy_uuid: str | None = None,
    leg_uuid: str | None = None,
    names: DialplanNames = DEFAULT_NAMES,
    lease_s: int | None = None,
) -> list[Step]:
    """The ESL steps for ``cmd``.

    ``uuid`` (default ``cmd.channel``): the caller's channel for call commands; ``Execute`` steps
    need it to sit in ``park``. ``spy_uuid``: for ``StartSpy``, the *caller's* channel of the
    call to spy on (the adapter resolves an agent name or an agent leg to it; a UUID target is
    taken as given). ``leg_uuid``: ``origination_uuid`` for an originated leg (the adapter's,
    so it knows the spyer/callback channel before it rings). ``lease_s``: renew the fail-open
    timer before plans that run applications on the parked channel (see the module doc)."""
    steps = _plan(cmd, uuid=uuid or cmd.channel, spy_uuid=spy_uuid, leg_uuid=leg_uuid, names=names)
    if lease_s is None or not any(isinstance(s, Execute) for s in steps):
        return steps
    last = steps[-1]
    if isinstance(last, Api) and last.command.startswith("uuid_transfer "):
        return steps  # the plan leaves park: the queue extension cancels the timer itself
    target = next(s.uuid for s in steps if isinstance(s, Execute))
    wait_s = -(-cmd.timeout_ms // 1000) if isinstance(cmd, CollectDigits) else 0
    lease = [
        Api(f"sched_del {target}"),
        Api(f"sched_transfer +{int(lease_s) + wait_s} {target} {names.failopen_extension} XML {names.context}"),
    ]
    return [*lease, *steps]


def _plan(
    cmd: Command, *, uuid: str | None, spy_uuid: str | None, leg_uuid: str | None, names: DialplanNames
) -> list[Step]:
    if isinstance(cmd, Answer):
        return [Execute(_uuid(uuid, "channel"), "answer")]
    if isinstance(cmd, PlayPrompt):
        target = _uuid(uuid, "channel")
        _ident(cmd.prompt, "prompt", _PROMPT)
        digits = _ident(cmd.interrupt_digits, "interrupt digits", _DIGITS)
        # playback stops on playback_terminators (default "*"): "none" makes it uninterruptible
        return [_set(target, "playback_terminators", digits or "none"), Execute(target, "playback", cmd.prompt)]
    if isinstance(cmd, CollectDigits):
        target = _uuid(uuid, "channel")
        _ident(cmd.prompt, "prompt", _PROMPT)
        if cmd.max_digits < 1 or cmd.timeout_ms < 0:
            raise ValueError(f"invalid digit collection: max_digits={cmd.max_digits} timeout_ms={cmd.timeout_ms}")
        steps: list[Step] = []
        if cmd.node:
            # Announce the node on the channel: the translator turns the `set` into
            # IvrNodeEntered, so controller-driven journeys are recorded from the PBX side too.
            steps.append(_set(target, names.node_variable, clean_text(cmd.node)))
        # sendmsg_ivr: play_and_get_digits <min> <max> <tries> <timeout> <terminators> <file>
        # <invalid_file> <var_name> <regexp> <digit_timeout>; the digits come back in
        # variable_<var_name> of its CHANNEL_EXECUTE_COMPLETE
        regexp = "\\d" if cmd.max_digits == 1 else "\\d+"
        invalid = _ident(names.invalid_prompt, "prompt", _PROMPT)
        arg = (
            f"1 {int(cmd.max_digits)} 1 {int(cmd.timeout_ms)} # {cmd.prompt} {invalid} "
            f"{_ident(names.digit_variable, 'variable name', _VARNAME)} {regexp} {int(names.digit_timeout_ms)}"
        )
        steps.append(Execute(target, "play_and_get_digits", arg))
        return steps
    if isinstance(cmd, SetDisplayName):
        # sendmsg_ivr: effective_caller_id_name set before the transfer is what the agent's
        # phone shows (INVITE From and the agent leg's Caller-Caller-ID-Name)
        return [_set(_uuid(uuid, "channel"), "effective_caller_id_name", clean_text(cmd.name))]
    if isinstance(cmd, SetVariable):
        return [_set(_uuid(uuid, "channel"), cmd.name, clean_text(cmd.value))]
    if isinstance(cmd, RouteToQueue):
        target = _uuid(uuid, "channel")
        extension = queue_extension(cmd.queue, names)
        return [_set(target, "cc_base_score", _score(cmd.priority, names)), _transfer(target, extension, names)]
    if isinstance(cmd, ReleaseCall):
        return [_transfer(_uuid(uuid, "channel"), names.default_extension, names)]
    if isinstance(cmd, MoveToQueue):
        target = _uuid(uuid, "channel")
        if cmd.min_penalty is not None:
            raise ValueError("mod_callcenter has no per-caller minimum tier level (min_penalty)")
        extension = queue_extension(cmd.queue, names)
        return [
            Api(f"uuid_setvar {target} cc_base_score {_score(cmd.priority, names)}"),
            _transfer(target, extension, names),
        ]
    if isinstance(cmd, HangUp):
        # park_controller_flow: uuid_kill <uuid> NORMAL_CLEARING
        return [Api(f"uuid_kill {_uuid(uuid, 'channel')} {cause_name(cmd.cause)}")]
    if isinstance(cmd, StartSpy):
        return [_spy(cmd, spy_uuid, leg_uuid, names)]
    if isinstance(cmd, StopSpy):
        return [Api(f"uuid_kill {_uuid(cmd.spyer_channel, 'spyer channel')} NORMAL_CLEARING")]
    if isinstance(cmd, PauseAgent):
        agent = _ident(cmd.agent, "agent", _AGENT)
        if cmd.queue is not None:
            raise ValueError("mod_callcenter pauses an agent in every queue (agent status), not per queue")
        status = "'On Break'" if cmd.paused else "Available"
        # api_replies / agent_status_break: agent set status 1001 'On Break' -> +OK
        return [Api(f"callcenter_config agent set status {agent} {status}")]
    if isinstance(cmd, AddQueueMember):
        if cmd.paused:
            raise ValueError("mod_callcenter tiers cannot be added paused: pause the agent (PauseAgent)")
        queue = tier_queue(cmd.queue, names)
        agent = _ident(cmd.agent, "agent", _AGENT)
        # overflow_transfer: tier add support@default 1003 0 1 (level 0, position 1)
        return [Api(f"callcenter_config tier add {queue} {agent} {max(0, int(cmd.penalty))} 1")]
    if isinstance(cmd, RemoveQueueMember):
        queue = tier_queue(cmd.queue, names)
        return [Api(f"callcenter_config tier del {queue} {_ident(cmd.agent, 'agent', _AGENT)}")]
    if isinstance(cmd, Originate):
        return [_originate(cmd, leg_uuid, names)]
    raise ValueError(f"no FreeSWITCH mapping for command {cmd.kind!r}")


def tier_queue(queue: str, names: DialplanNames = DEFAULT_NAMES) -> str:
    """mod_callcenter's own queue name: always with the domain."""
    m = _QUEUE.match(queue) if isinstance(queue, str) else None
    if m is None:
        raise ValueError(f"invalid queue: {queue!r}")
    return f"{m.group('name')}@{m.group('domain') or names.queue_domain}"


def _spy(cmd: StartSpy, spy_uuid: str | None, leg_uuid: str | None, names: DialplanNames) -> Api:
    endpoint = _ident(cmd.supervisor_endpoint, "supervisor endpoint", _ENDPOINT)
    target = spy_uuid if spy_uuid is not None else (cmd.target if is_uuid(cmd.target) else None)
    if target is None:
        raise ValueError(f"spy target {cmd.target!r}: no call to spy on (want the caller's channel UUID)")
    target = _uuid(target, "spy target")
    mode = SpyMode(cmd.mode)
    number = re.sub(r"[^0-9A-Za-z_+]", "", endpoint.rsplit("/", 1)[-1].split("@", 1)[0]) or "supervisor"
    pairs: list[tuple[str, str]] = []
    if leg_uuid is not None:
        pairs.append(("origination_uuid", _uuid(leg_uuid, "originated leg uuid")))
    pairs += [
        ("origination_caller_id_number", number),
        ("origination_caller_id_name", "Supervisor"),
        ("originate_timeout", str(int(names.spy_ring_timeout_s))),
        ("cc_spy_mode", mode.value),
        ("eavesdrop_enable_dtmf", "false"),
        ("eavesdrop_whisper_aleg", "true" if mode is SpyMode.WHISPER else "false"),
        ("eavesdrop_whisper_bleg", "false"),
    ]
    app = "three_way" if mode is SpyMode.BARGE else "eavesdrop"
    return Api(f"originate {_originate_vars(pairs)}{endpoint} &{app}({target})", background=True)


def _split_destination(destination: str) -> tuple[str, str]:
    """``context,exten[,1]`` (the Goto syntax Asterisk's Originate takes too) -> (context, exten)."""
    parts = [p.strip() for p in destination.split(",")]
    if len(parts) == 3 and parts[2] == "1":
        parts = parts[:2]
    if len(parts) != 2:
        raise ValueError(f"invalid originate destination (want context,exten): {destination!r}")
    context = _ident(parts[0], "dialplan context", _CONTEXT)
    exten = _ident(parts[1], "extension", _EXTEN)
    return context, exten


def _originate(cmd: Originate, leg_uuid: str | None, names: DialplanNames) -> Api:
    endpoint = _ident(cmd.endpoint, "endpoint", _ENDPOINT)
    context, exten = _split_destination(cmd.destination)
    pairs: list[tuple[str, str]] = []
    if leg_uuid is not None:
        pairs.append(("origination_uuid", _uuid(leg_uuid, "originated leg uuid")))
    if cmd.caller_id:
        name, number = _caller_id(cmd.caller_id)
        if number:
            pairs.append(("origination_caller_id_number", number))
        if name:
            pairs.append(("origination_caller_id_name", name))
    pairs.append(("originate_timeout", str(int(cmd.timeout_s))))
    pairs += [(name, value) for name, value in cmd.variables]
    return Api(f"originate {_originate_vars(pairs)}{endpoint} {exten} XML {context}", background=True)
