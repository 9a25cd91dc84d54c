"""IVR stepping: pure functions from (menu, node, input) to the next step.

The shell asks ``ivr_start(menu)`` for the first step, executes it (``ivr_commands``: a
``CollectDigits`` naming the node), and feeds what the caller did back into ``ivr_next``.
There is no hidden state: where the caller is (``node``) and how many failed attempts they
made there (``tries``) travel in the steps, so a controller restart or a hot reload can
continue a call from its journey alone.

A step is one of:

- ``IvrCollect``  play the node's prompt and collect digits (``announcement`` first, if any);
- ``IvrInvalid``  the input was invalid or missing and retries remain: play ``prompt`` (the
  node's invalid/timeout prompt) and collect again (``next``);
- an exit: ``IvrQueue`` / ``IvrCallback`` / ``IvrVoicemail`` / ``IvrHangup``. Exits go
  through ``decide.decide_after_ivr`` (which enforces the tier rules) before commands are sent.

Node ids are what journeys and the abandon report name, so they come from the file, never
from positions.

Retries: ``tries`` counts failed attempts at the current node (0 on entry). A timeout or an
invalid entry with ``tries + 1 <= retries`` replays the node; otherwise the node's
``on_failure`` target is taken. ``retries: 2`` thus means up to three attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from callcenter.domain.commands import CollectDigits, Command, HangUp, PlayPrompt
from callcenter.routing.rules import IvrMenu, IvrNode, IvrTarget


@dataclass(frozen=True, slots=True)
class IvrCollect:
    node: str
    prompt: str
    max_digits: int
    timeout_s: float
    tries: int = 0
    announcement: str | None = None  # the prompt of the option that led here


@dataclass(frozen=True, slots=True)
class IvrInvalid:
    node: str
    reason: Literal["invalid", "timeout"]
    prompt: str | None  # invalid_prompt / timeout_prompt of the node (None: just replay)
    digits: str | None
    next: IvrCollect


@dataclass(frozen=True, slots=True)
class IvrQueue:
    node: str
    queue: str
    priority: int
    prompt: str | None
    digits: str | None
    via: Literal["option", "failure"]


@dataclass(frozen=True, slots=True)
class IvrCallback:
    node: str
    queue: str
    prompt: str | None
    digits: str | None
    via: Literal["option", "failure"]


@dataclass(frozen=True, slots=True)
class IvrVoicemail:
    node: str
    mailbox: str
    prompt: str | None
    digits: str | None
    via: Literal["option", "failure"]


@dataclass(frozen=True, slots=True)
class IvrHangup:
    node: str
    prompt: str | None
    digits: str | None
    via: Literal["option", "failure"]


IvrExit = IvrQueue | IvrCallback | IvrVoicemail | IvrHangup
IvrStep = IvrCollect | IvrInvalid | IvrExit


def _collect(node: IvrNode, tries: int = 0, announcement: str | None = None) -> IvrCollect:
    return IvrCollect(node.id, node.prompt, node.max_digits, node.timeout_s, tries, announcement)


def _node(menu: IvrMenu, node_id: str) -> IvrNode:
    node = menu.node(node_id)
    if node is None:
        # A programming error of the shell (or a call continued under rules that dropped the
        # node: a call keeps the RuleSet it started with, see docs/routing.md).
        raise ValueError(f"no IVR node {node_id!r} in this menu (nodes: {', '.join(n.id for n in menu.nodes)})")
    return node


def _target(
    menu: IvrMenu, node: IvrNode, target: IvrTarget, digits: str | None, via: Literal["option", "failure"]
) -> IvrStep:
    match target.kind:
        case "node":
            assert target.node is not None
            return _collect(_node(menu, target.node), 0, target.prompt)
        case "queue":
            assert target.queue is not None
            return IvrQueue(node.id, target.queue, target.priority or 0, target.prompt, digits, via)
        case "callback":
            assert target.callback is not None
            return IvrCallback(node.id, target.callback, target.prompt, digits, via)
        case "voicemail":
            assert target.voicemail is not None
            return IvrVoicemail(node.id, target.voicemail, target.prompt, digits, via)
        case _:
            return IvrHangup(node.id, target.prompt, digits, via)


def ivr_start(menu: IvrMenu) -> IvrCollect:
    """The first step of ``menu``: collect at its start node."""
    return _collect(menu.start_node)


def ivr_next(menu: IvrMenu, node_id: str, digits: str | None, tries: int = 0) -> IvrStep:
    """What follows ``digits`` (None or "" = timeout, no input) at ``node_id`` after ``tries``
    failed attempts there. Raises ValueError for a node that is not in ``menu``."""
    node = _node(menu, node_id)
    if digits and digits in node.options:
        return _target(menu, node, node.options[digits], digits, "option")
    reason: Literal["invalid", "timeout"] = "invalid" if digits else "timeout"
    tries = max(tries, 0) + 1
    if tries > node.retries:
        return _target(menu, node, node.on_failure, digits or None, "failure")
    prompt = node.invalid_prompt if reason == "invalid" else node.timeout_prompt
    return IvrInvalid(node.id, reason, prompt, digits or None, _collect(node, tries))


def ivr_commands(step: IvrCollect | IvrInvalid | IvrHangup, call_id: str, channel: str | None) -> list[Command]:
    """PBX-neutral commands for the in-menu steps (and a plain hang-up). Other exits are turned
    into a ``Decision`` by ``decide_after_ivr`` and sent with ``decision_commands``."""
    out: list[Command] = []
    if isinstance(step, IvrInvalid):
        if step.prompt:
            out.append(PlayPrompt(call_id=call_id, channel=channel, prompt=step.prompt))
        step = step.next
    if isinstance(step, IvrCollect):
        if step.announcement:
            out.append(PlayPrompt(call_id=call_id, channel=channel, prompt=step.announcement))
        out.append(
            CollectDigits(
                call_id=call_id,
                channel=channel,
                prompt=step.prompt,
                max_digits=step.max_digits,
                timeout_ms=round(step.timeout_s * 1000),
                node=step.node,
            )
        )
        return out
    if step.prompt:
        out.append(PlayPrompt(call_id=call_id, channel=channel, prompt=step.prompt))
    out.append(HangUp(call_id=call_id, channel=channel))
    return out
