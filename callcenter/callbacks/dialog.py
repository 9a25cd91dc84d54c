"""Taking a callback request on the phone: the pure dialog (no I/O, no clock).

Used by the routing shell when a caller asks for a callback (IVR option, a rule's or the
closed-hours ``callback``) and when a queue's callback offer is played before the queue
(virtual hold). Each step is an ``Ask`` (a prompt and the digits to collect: the shell turns it
into ``PlayPrompt``/``CollectDigits`` with ``ask_commands``) and ``dialog_next`` maps the digits
the caller keyed (``None``: nothing, or the caller hung up) to the next step, until one of:

* ``Filed(phone, topic)``: the request is stored with that number and topic;
* ``Declined``: the caller did not take the offer (only after an offer); they join the queue;
* ``Failed(reason)``: no number could be taken (withheld caller id and nothing valid keyed).

Steps::

    offer   "press 1 to be called back"   key -> confirm (or number when the caller id is unusable)
                                          anything else / nothing -> Declined (join the queue)
    confirm "1: this number, 2: another"  1 -> topic; 2 -> number; nothing/invalid -> ask again
                                          (retries), then the caller id is used: they did ask
    number  "key the number, then #"      valid -> topic; invalid/nothing -> ask again, then
                                          Declined after an offer (the caller still waits), or the
                                          caller id if usable, else Failed
    topic   "1: billing, 2: ..."          a listed digit -> Filed(topic); nothing/invalid -> ask
                                          again, then Filed without a topic (never lose a request
                                          over a topic)

A hang-up ends the dialog at once: ``dialog_next(..., hung_up=True)`` gives ``Declined`` during
an offer the caller never accepted; once a callback was asked for, the request is filed with the
number known so far (the one confirmed or keyed, else the caller id: a caller who asked for a
callback and hung up while picking a topic still gets called back), else ``Failed``.

Numbers keyed by the caller are validated by the ``normalise`` function the shell passes in
(E.164 in the configured region, ``None`` when invalid), so this module stays free of phone
libraries and I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from callcenter.domain.commands import CollectDigits, Command, HangUp, PlayPrompt, SetVariable
from callcenter.routing.decide import VAR_CALLBACK
from callcenter.routing.rules import CallbackDialog

Stage = Literal["offer", "confirm", "number", "topic"]
Normalise = Callable[[str], str | None]



@dataclass(frozen=True, slots=True)
class Ask:
    stage: Stage
    prompt: str
    max_digits: int
    timeout_ms: int
    tries: int = 0  # repeats so far of this stage
    before: str | None = None  # played first (e.g. "that number is not valid")
    caller_phone: str | None = None  # the caller id in E.164, when usable
    phone: str | None = None  # the number chosen so far (topic stage)
    key: str | None = None  # offer stage: the key that accepts


@dataclass(frozen=True, slots=True)
class Filed:
    phone: str
    topic: str | None
    confirmed: bool  # the caller confirmed the number (or keyed it); False: caller id by default


@dataclass(frozen=True, slots=True)
class Declined:
    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    reason: str


Step = Ask | Filed | Declined | Failed


def offer_start(prompt: str, key: str, timeout_ms: int, caller_phone: str | None) -> Ask:
    """The virtual-hold offer (one key, e.g. ``1``); ``key`` is checked by ``dialog_next``."""
    return Ask("offer", prompt, 1, timeout_ms, caller_phone=caller_phone, key=key)


def dialog_start(d: CallbackDialog, caller_phone: str | None) -> Ask:
    """A caller who asked for a callback: confirm the caller id, or key a number when there is none."""
    if caller_phone is None:
        return _number(d, caller_phone=None)
    return Ask("confirm", d.confirm_prompt, 1, _ms(d.timeout_s), caller_phone=caller_phone)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _number(d: CallbackDialog, *, caller_phone: str | None, tries: int = 0,
            before: str | None = None) -> Ask:
    return Ask("number", d.number_prompt, d.max_number_digits, _ms(d.timeout_s), tries=tries, before=before,
               caller_phone=caller_phone)


def _chosen(d: CallbackDialog, step: Ask, phone: str, *, confirmed: bool) -> Step:
    if d.topics:
        assert d.topic_prompt is not None  # validated with the rules
        return Ask("topic", d.topic_prompt, 1, _ms(d.timeout_s), caller_phone=step.caller_phone,
                   phone=phone)
    return Filed(phone, None, confirmed)


def _hung_up(step: Ask) -> Step:
    """The caller hung up after asking for a callback: keep the request with the best number."""
    if step.phone is not None:
        return Filed(step.phone, None, True)
    if step.caller_phone is not None:
        return Filed(step.caller_phone, None, False)
    return Failed("hung up before a number was taken, and the caller id is withheld")


def dialog_next(step: Ask, digits: str | None, d: CallbackDialog, normalise: Normalise, *,
                hung_up: bool = False, offered: bool = False) -> Step:
    """The step after ``step`` given the caller's ``digits``. ``offered``: the dialog began with
    a queue's offer (so giving up means joining the queue, not losing the caller)."""
    keyed = (digits or "").strip()
    if step.stage == "offer":
        if hung_up:
            return Declined("hung up during the offer")
        if keyed != step.key:
            return Declined("no key" if not keyed else f"keyed {keyed!r}")
        return dialog_start(d, step.caller_phone)
    if hung_up:
        return _hung_up(step)
    again = step.tries < d.retries
    if step.stage == "confirm":
        assert step.caller_phone is not None
        if keyed == d.confirm_key:
            return _chosen(d, step, step.caller_phone, confirmed=True)
        if keyed == d.other_key:
            return _number(d, caller_phone=step.caller_phone)
        if again:
            return replace(step, tries=step.tries + 1, before=d.invalid_number_prompt if keyed else None)
        # Asked for a callback but never confirmed: the number they call from is the best we have.
        return Filed(step.caller_phone, None, False)
    if step.stage == "number":
        phone = normalise(keyed.rstrip("#")) if keyed.rstrip("#") else None
        if phone is not None:
            return _chosen(d, step, phone, confirmed=True)
        if again:
            return replace(step, tries=step.tries + 1, before=d.invalid_number_prompt)
        if offered:
            return Declined("no valid number keyed")
        if step.caller_phone is not None:
            return Filed(step.caller_phone, None, False)
        return Failed("no valid number keyed and the caller id is withheld")
    # topic
    assert step.phone is not None
    if keyed in d.topics:
        return Filed(step.phone, d.topics[keyed], True)
    if again:
        return replace(step, tries=step.tries + 1, before=None)
    return Filed(step.phone, None, True)


def ask_commands(step: Ask, call_id: str, channel: str | None) -> list[Command]:
    out: list[Command] = []
    if step.before:
        out.append(PlayPrompt(prompt=step.before, call_id=call_id, channel=channel))
    # No ``node``: the dialog is not an IVR menu (a node would count the call as "via the IVR").
    out.append(CollectDigits(prompt=step.prompt, max_digits=step.max_digits, timeout_ms=step.timeout_ms,
                             call_id=call_id, channel=channel))
    return out


def filed_commands(d: CallbackDialog, queue: str, call_id: str, channel: str | None) -> list[Command]:
    """After a request is filed: thank the caller, mark the channel, hang up."""
    return [
        PlayPrompt(prompt=d.thanks_prompt, call_id=call_id, channel=channel),
        SetVariable(name=VAR_CALLBACK, value=queue, call_id=call_id, channel=channel),
        HangUp(call_id=call_id, channel=channel),
    ]


def failed_commands(d: CallbackDialog, call_id: str, channel: str | None) -> list[Command]:
    return [PlayPrompt(prompt=d.failed_prompt, call_id=call_id, channel=channel),
            HangUp(call_id=call_id, channel=channel)]


__all__ = [
    "Ask",
    "Declined",
    "Failed",
    "Filed",
    "Step",
    "ask_commands",
    "dialog_next",
    "dialog_start",
    "failed_commands",
    "filed_commands",
    "offer_start",
]
