"""``callcenter replay --pbx asterisk|freeswitch FILE``: a recorded PBX trace -> normalized events.

Reads a trace in the shared capture format (``callcenter.pbx.asterisk.trace``), feeds every
received AMI message through the same ``AsteriskTranslator`` the live adapter uses, with the
frame's capture time as event time, and prints one JSON object per domain event
(``Event.to_dict()``: ``type``, ``pbx``, ``call_id`` -- null for events of no call --, ``at`` in
ISO 8601, ``channel`` and the event's own fields). AMI events the translator has no rule for
are counted and reported on stderr at the end; they never fail the replay. A file that is not
a trace exits with status 2 and says why.

``--summary`` prints the per-call journey summaries instead, if the analytics package offers
``callcenter.analytics.attribution.summarize_events(events) -> list[dict]``.

``--pbx freeswitch`` reads an ESL trace (``callcenter.pbx.freeswitch.trace``: ``#### RECV ...``
frames) through the same ``EslParser`` and ``FreeswitchTranslator`` the FreeSWITCH adapter uses;
everything else (output, unknown events, exit codes) is the same.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from callcenter.domain.events import Event
from callcenter.pbx.asterisk.message import AmiMessage
from callcenter.pbx.asterisk.protocol import AmiParser
from callcenter.pbx.asterisk.trace import TraceFormatError, read_trace
from callcenter.pbx.asterisk.translate import AsteriskTranslator
from callcenter.pbx.freeswitch.translate import FreeswitchTranslator

__all__ = [
    "add_arguments",
    "decode_frame",
    "main",
    "replay_esl_events",
    "replay_events",
    "run",
    "translate_esl_trace",
    "translate_trace",
]


def decode_frame(data: bytes) -> AmiMessage | None:
    """One captured AMI message -> ``AmiMessage`` (None for the banner or a non-AMI frame)."""
    messages = AmiParser(expect_banner=False).feed(data)
    return messages[0] if messages else None


def translate_trace(
    path: str | Path, translator: AsteriskTranslator, malformed: list[str] | None = None
) -> Iterator[Event]:
    """Every domain event of a trace, in order, stamped with each frame's capture time.

    Raises ``TraceFormatError`` on a file that is not a trace. Received bytes go through the
    same sans-I/O parser as the live client (banner first); AMI frames it cannot read are
    appended to ``malformed`` (if given) and skipped, as the live client would."""

    def on_malformed(raw: bytes, reason: str) -> None:
        if malformed is not None:
            malformed.append(f"{reason}: {raw[:60]!r}")

    parser = AmiParser(expect_banner=True, on_malformed=on_malformed)
    for frame in read_trace(path):
        if frame.direction != "recv":
            continue
        for msg in parser.feed(frame.data):
            yield from translator.feed(msg, frame.at)


def replay_events(path: str | Path, pbx_name: str = "asterisk") -> tuple[list[Event], AsteriskTranslator]:
    translator = AsteriskTranslator(pbx_name)
    return list(translate_trace(path, translator)), translator


def translate_esl_trace(
    path: str | Path, translator: FreeswitchTranslator, malformed: list[str] | None = None
) -> Iterator[Event]:
    """Every domain event of an ESL trace, in order, stamped with each frame's capture time.

    Raises the FreeSWITCH ``TraceFormatError`` on a file that is not a trace. Received bytes go
    through the live client's framer; an event body that cannot be decoded is appended to
    ``malformed`` and skipped, a framing error ends the replay there (as it ends a connection)."""
    from callcenter.pbx.freeswitch.message import EslDecodeError
    from callcenter.pbx.freeswitch.protocol import CT_EVENT_JSON, CT_EVENT_PLAIN, EslParser, EslProtocolError
    from callcenter.pbx.freeswitch.protocol import decode_event as decode_esl_event
    from callcenter.pbx.freeswitch.trace import read_trace as read_esl_trace

    parser = EslParser()
    for frame in read_esl_trace(path):
        if frame.direction != "recv":
            continue
        try:
            messages = parser.feed(frame.data)
        except EslProtocolError as exc:
            if malformed is not None:
                malformed.append(f"{exc}: {frame.data[:60]!r}")
            return
        for msg in messages:
            if msg.content_type not in (CT_EVENT_PLAIN, CT_EVENT_JSON):
                continue  # replies to the capturing client's own commands
            try:
                event = decode_esl_event(msg, lazy=False)
            except EslDecodeError as exc:
                if malformed is not None:
                    malformed.append(f"{exc}: {msg.body[:60]!r}")
                continue
            yield from translator.feed(event, frame.at)


def replay_esl_events(path: str | Path, pbx_name: str = "freeswitch") -> tuple[list[Event], FreeswitchTranslator]:
    translator = FreeswitchTranslator(pbx_name)
    return list(translate_esl_trace(path, translator)), translator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pbx", choices=["asterisk", "freeswitch"], default="asterisk", help="PBX the trace was captured from"
    )
    parser.add_argument(
        "--name", default=None, help="PBX node name to put in the events' pbx field (default: the --pbx value)"
    )
    parser.add_argument("--summary", action="store_true", help="print per-call journey summaries instead of events")
    parser.add_argument("file", metavar="FILE", help="AMI or ESL trace in the capture format (see --record)")


def _summarizer() -> Any:
    try:
        module = importlib.import_module("callcenter.analytics.attribution")
    except ImportError:
        return None
    return getattr(module, "summarize_events", None)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def run(args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    summarize = None
    if args.summary:
        summarize = _summarizer()
        if summarize is None:
            print("replay: summary not available (callcenter.analytics.attribution.summarize_events)", file=err)
            return 2
    pbx = getattr(args, "pbx", "asterisk") or "asterisk"
    name = getattr(args, "name", None) or pbx
    wire = "ESL" if pbx == "freeswitch" else "AMI"
    translator: AsteriskTranslator | FreeswitchTranslator
    malformed: list[str] = []
    try:
        if pbx == "freeswitch":
            from callcenter.pbx.freeswitch.trace import TraceFormatError as EslTraceFormatError

            translator = FreeswitchTranslator(name)
            try:
                events = list(translate_esl_trace(args.file, translator, malformed))
            except EslTraceFormatError as exc:
                raise TraceFormatError(str(exc)) from exc
        else:
            translator = AsteriskTranslator(name)
            events = list(translate_trace(args.file, translator, malformed))
    except FileNotFoundError:
        print(f"replay: {args.file}: no such file", file=err)
        return 2
    except IsADirectoryError:
        print(f"replay: {args.file}: is a directory", file=err)
        return 2
    except TraceFormatError as exc:
        print(f"replay: not an {wire} trace: {exc}", file=err)
        return 2
    rows: list[dict[str, Any]] = summarize(events) if summarize else [e.to_dict() for e in events]
    try:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
        out.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): not a failure of the replay. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    for problem in malformed:
        print(f"replay: skipped a malformed {wire} frame ({problem})", file=err)
    if translator.unknown:
        listing = ", ".join(f"{event} x{n}" for event, n in sorted(translator.unknown.items()))
        print(f"replay: {sum(translator.unknown.values())} {wire} event(s) without a rule: {listing}", file=err)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callcenter replay", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
