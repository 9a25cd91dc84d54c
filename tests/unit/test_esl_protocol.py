"""The sans-I/O ESL framer, event decoder and command encoders against the real FreeSWITCH
1.10.12 captures (tests/fixtures/freeswitch)."""

from __future__ import annotations

import difflib
import io
import json
import pickle
import re
from functools import cache
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter.pbx.freeswitch.message import EslDecodeError, EslEvent, EslFrame, url_decode
from callcenter.pbx.freeswitch.protocol import (
    EslParser,
    EslProtocolError,
    decode_event,
    encode_api,
    encode_auth,
    encode_bgapi,
    encode_command,
    encode_event_subscription,
    encode_execute,
    encode_exit,
    encode_filter,
    encode_sendmsg,
    mask_secrets,
    split_api,
)
from callcenter.pbx.freeswitch.trace import TraceFormatError, TraceWriter, read_trace, read_trace_bytes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "freeswitch"
TRACES = sorted(FIXTURES.glob("*.esl.txt")) + sorted((FIXTURES / "checks").glob("*.esl.txt"))
PLAIN_TWIN = FIXTURES / "answered_caller_hangup.esl.txt"
JSON_TWIN = FIXTURES / "answered_caller_hangup.json.esl.txt"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def ids(p: Path) -> str:
    return p.name.removesuffix(".esl.txt")


@cache
def recv_frames(path: Path) -> tuple[bytes, ...]:
    return tuple(f.data for f in read_trace(path) if f.direction == "recv")


@cache
def sent_frames(path: Path) -> tuple[bytes, ...]:
    return tuple(f.data for f in read_trace(path) if f.direction == "send")


@cache
def stream(path: Path) -> bytes:
    return b"".join(recv_frames(path))


def reference_frame(data: bytes) -> tuple[dict[str, str], bytes]:
    """Independent, naive reading of one captured message: header lines, blank line, body."""
    head, sep, rest = data.partition(b"\n\n")
    assert sep
    headers = dict(line.split(": ", 1) for line in head.decode().split("\n"))
    assert len(rest) == int(headers.get("Content-Length", "0"))
    return headers, rest


def feed_in_pieces(data: bytes, cuts: list[int], *, keep_raw: bool = False) -> tuple[list[EslFrame], EslParser]:
    parser = EslParser(keep_raw=keep_raw)
    out: list[EslFrame] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out.extend(parser.feed(data[prev:cut]))
        prev = cut
    return out, parser


def events_of(path: Path, *, lazy: bool = True) -> list[EslEvent]:
    frames = EslParser().feed(stream(path))
    return [decode_event(f, lazy=lazy) for f in frames if f.content_type.startswith("text/event-")]


def test_fixtures_present() -> None:
    # The suite is only meaningful with the captures; a missing directory must fail loudly.
    assert len(TRACES) >= 14
    assert PLAIN_TWIN.exists() and JSON_TWIN.exists()


# -- the trace format ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", TRACES, ids=ids)
def test_trace_reader_accounts_for_every_byte(path: Path) -> None:
    # Re-serialising what the reader returned gives the file back: nothing skipped or merged.
    out = io.BytesIO()
    for f in read_trace(path):
        stamp = f.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        if f.direction == "note":
            out.write(b"#### NOTE " + stamp + (b" " + f.data if f.data else b"") + b"\n")
        else:
            word = b"RECV" if f.direction == "recv" else b"SENT"
            out.write(b"#### " + word + b" " + stamp + b" len=%d\n" % len(f.data) + f.data + b"\n")
    assert out.getvalue() == path.read_bytes()


def test_trace_writer_round_trip_masks_the_password(tmp_path: Path) -> None:
    path = tmp_path / "rec.esl.txt"
    with TraceWriter(path) as w:
        w.recv(b"Content-Type: auth/request\n\n")
        w.send(encode_auth("s3cr3t pass"))
        w.note("multi\nline note")
        w.send(b"userauth ctl@default:hunter2\n\n")
        w.recv(b"Content-Type: api/response\nContent-Length: 3\n\nabc")
    frames = read_trace(path)
    assert [f.direction for f in frames] == ["recv", "send", "note", "send", "recv"]
    assert frames[1].data == b"auth ********\n\n"
    assert frames[2].note == "multi line note"
    assert frames[3].data == b"userauth ctl@default:********\n\n"
    assert frames[4].data.endswith(b"\n\nabc")  # no newline of its own, like create_uuid's reply
    assert b"s3cr3t" not in path.read_bytes() and b"hunter2" not in path.read_bytes()


def test_trace_reader_refuses_a_short_frame() -> None:
    with pytest.raises(TraceFormatError, match="announces 10 bytes"):
        read_trace_bytes(b"#### RECV 2026-11-22T15:03:15.533951Z len=10\nabc\n")
    with pytest.raises(TraceFormatError, match="frame header"):
        read_trace_bytes(b"Content-Type: auth/request\n\n")


# -- framing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", TRACES, ids=ids)
def test_fixture_parses_to_exactly_the_recorded_frames(path: Path) -> None:
    recorded = recv_frames(path)
    parser = EslParser(keep_raw=True)
    frames = parser.feed(stream(path))
    assert [f.raw for f in frames] == list(recorded)
    for frame, data in zip(frames, recorded, strict=True):
        headers, body = reference_frame(data)
        assert frame.headers == headers
        assert frame.body == body
    assert parser.pending == b""
    assert parser.frames == len(recorded)


def test_every_content_type_of_the_captures_is_framed() -> None:
    seen: dict[str, int] = {}
    for path in TRACES:
        for frame in EslParser().feed(stream(path)):
            seen[frame.content_type] = seen.get(frame.content_type, 0) + 1
    assert set(seen) == {
        "auth/request",
        "command/reply",
        "api/response",
        "text/event-plain",
        "text/event-json",
        "text/disconnect-notice",
    }


def test_replies_as_recorded() -> None:
    frames = EslParser().feed(stream(FIXTURES / "sendmsg_ivr.esl.txt"))
    auth = frames[0]
    assert auth.content_type == "auth/request" and auth.body == b""
    replies = [f for f in frames if f.content_type == "command/reply"]
    assert replies[0].reply_text == "+OK accepted" and replies[0].ok
    assert replies[1].reply_text == "+OK event listener enabled plain"
    job = next(f for f in replies if (f.reply_text or "").startswith("+OK Job-UUID: "))
    assert job.job_uuid == "44b4f706-de84-4eed-a0e5-79312cdfb044"
    assert job.reply_text == "+OK Job-UUID: " + job.job_uuid
    api = [f for f in frames if f.content_type == "api/response"]
    # create_uuid: 36 bytes, no final newline - the body is counted, never line-read.
    assert api[0].body == b"d63240f4-1b5e-4d1e-9241-a08c23dcd9f1"
    assert api[1].text == "+OK\n"
    bye = frames[-1]
    assert bye.content_type == "text/disconnect-notice"
    assert bye.text.startswith("Disconnected, goodbye.\nSee you at ClueCon! ") and len(bye.body) == 67
    assert frames[-2].reply_text == "+OK bye"


def test_api_response_bodies_are_counted_not_line_read() -> None:
    frames = EslParser().feed(stream(FIXTURES / "api_replies.esl.txt"))
    bodies = [f.text for f in frames if f.content_type == "api/response"]
    status = next(b for b in bodies if b.startswith("UP "))
    assert "FreeSWITCH (Version 1.10.12" in status and status.count("\n") == 8
    assert bodies.count('{"row_count": 0}\n') == 2  # empty show channels: with a space, no rows
    assert any(b.startswith('{"row_count":1,"rows":[') for b in bodies)
    # `agent get status` and `... uuid` answer without a final newline; multi-line tables with.
    assert "On Break" in bodies and "In a queue call" in bodies
    assert any(b.startswith("queue|agent|state|level|position\n") for b in bodies)
    assert "-ERR Invalid Agent Status!\n" in bodies


@pytest.mark.parametrize("path", TRACES, ids=ids)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arbitrary_read_boundaries_give_the_same_frames(path: Path, data: st.DataObject) -> None:
    raw = stream(path)
    whole = EslParser().feed(raw)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=60))
    # Also cut right inside the header terminators and the first bodies, where it hurts most.
    cuts += data.draw(st.lists(st.sampled_from([m.start() + 1 for m in re.finditer(b"\n\n", raw[:20000])]), max_size=8))
    pieces, parser = feed_in_pieces(raw, cuts)
    assert pieces == whole
    assert parser.pending == b""


@pytest.mark.parametrize("path", [PLAIN_TWIN, JSON_TWIN, FIXTURES / "sendmsg_ivr.esl.txt"], ids=ids)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_feed_events_equals_feed_then_decode(path: Path, data: st.DataObject) -> None:
    # The client's fast path (events decoded straight from the read buffer) must give exactly
    # what the frame path gives, whatever the read boundaries.
    raw = stream(path)
    frames = EslParser().feed(raw)
    expected: list[object] = [
        decode_event(f, lazy=False) if f.content_type.startswith("text/event-") else f for f in frames
    ]
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(raw)), max_size=40))))
    parser = EslParser()
    got: list[object] = []
    prev = 0
    for cut in [*cuts, len(raw)]:
        got.extend(parser.feed_events(raw[prev:cut]))
        prev = cut
    assert got == expected
    assert all(isinstance(g, EslEvent) == isinstance(e, EslEvent) for g, e in zip(got, expected, strict=True))
    assert parser.pending == b"" and parser.decode_errors == 0 and parser.malformed == 0


def test_feed_events_counts_bad_bytes_and_skips_non_events() -> None:
    bad_utf8 = b'{"Event-Name":"CUSTOM","Caller-Caller-ID-Name":"\xff\xfe"}'
    not_json = b"[1, 2]"
    raw = b"".join(
        b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(body) + body
        for body in (bad_utf8, not_json, b'{"Event-Name":"HEARTBEAT"}')
    )
    reported: list[tuple[bytes, str]] = []
    parser = EslParser(on_malformed=lambda data, why: reported.append((data, why)))
    items = parser.feed_events(raw)
    assert [i.name for i in items if isinstance(i, EslEvent)] == ["CUSTOM", "HEARTBEAT"]
    assert items[0]["Caller-Caller-ID-Name"] == "\ufffd\ufffd"  # type: ignore[index]
    assert parser.decode_errors == 1 and parser.malformed == 1
    assert reported and reported[0][0] == not_json


def test_tiny_reads_give_the_same_frames() -> None:
    raw = stream(FIXTURES / "sendmsg_ivr.esl.txt")[:60000]
    whole = EslParser().feed(raw)
    cuts = list(range(0, len(raw), 7)) + list(range(3, len(raw), 11))
    pieces, parser = feed_in_pieces(raw, cuts, keep_raw=True)
    assert pieces == whole
    assert b"".join(f.raw for f in pieces) + parser.pending == raw


@given(name=st.text(min_size=1, max_size=20), data=st.data())
@settings(max_examples=60, deadline=None)
def test_utf8_split_across_reads_is_whole_again(name: str, data: st.DataObject) -> None:
    # cJSON writes non-ASCII raw (UTF-8); a read boundary inside a character must not break it.
    full = f"Иванова {name} Jürgen"
    obj = {"Event-Name": "CHANNEL_CREATE", "Caller-Caller-ID-Name": full, "Unique-ID": "u1"}
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    raw = b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(body) + body
    start = raw.index("И".encode())
    cut = data.draw(st.integers(start, len(raw) - 1))
    frames, _ = feed_in_pieces(raw, [cut, cut + 1])
    (frame,) = frames
    ev = decode_event(frame)
    assert ev["Caller-Caller-ID-Name"] == full
    assert decode_event(frame, lazy=False).headers["Caller-Caller-ID-Name"] == full


def test_every_cut_inside_a_multibyte_character_of_a_plain_body() -> None:
    # Plain events URL-encode non-ASCII, but api/response bodies carry it raw.
    body = "+OK Иванова Jürgen\n".encode()
    raw = b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body
    for cut in range(len(raw) + 1):
        frames, _ = feed_in_pieces(raw, [cut])
        assert [f.text for f in frames] == ["+OK Иванова Jürgen\n"]


def test_framing_errors_are_protocol_errors() -> None:
    with pytest.raises(EslProtocolError, match="Content-Length"):
        EslParser().feed(b"Content-Type: api/response\nContent-Length: 12x\n\nabc")
    with pytest.raises(EslProtocolError, match="Content-Length"):
        EslParser().feed(b"Content-Length: -4\nContent-Type: text/event-json\n\n{}")
    with pytest.raises(EslProtocolError, match="header block"):
        EslParser().feed(b"Content-Type: x\n" * 5000)
    with pytest.raises(EslProtocolError, match="limit"):
        EslParser(max_frame_size=100).feed(b"Content-Type: api/response\nContent-Length: 101\n\n")
    with pytest.raises(EslProtocolError, match="without ':'"):
        EslParser().feed(b"garbage line\n\n")


def test_stray_blank_lines_between_messages_are_skipped() -> None:
    raw = b"\n\nContent-Type: auth/request\n\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\n"
    frames = EslParser().feed(raw)
    assert [f.content_type for f in frames] == ["auth/request", "command/reply"]


# -- events ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", TRACES, ids=ids)
def test_lazy_lookups_equal_the_full_decode(path: Path) -> None:
    lazy = events_of(path)
    eager = events_of(path, lazy=False)
    assert lazy and len(lazy) == len(eager)
    for a, b in zip(lazy, eager, strict=True):
        for key, value in b.headers.items():
            assert a.get(key) == value, key
        assert a.get("No-Such-Header") is None and "No-Such-Header" not in a
        assert a.get("No-Such-Header", "dflt") == "dflt"  # a remembered miss still honours the default
        assert a.get(next(iter(b.headers))) == next(iter(b.headers.values()))  # and a remembered hit
        assert a.name == b.headers["Event-Name"]
        assert a == b
        assert a.body == b.body


def test_plain_values_are_url_decoded() -> None:
    events = events_of(FIXTURES / "sendmsg_ivr.esl.txt")
    create = next(e for e in events if e.name == "CHANNEL_CREATE")
    assert create["Caller-Caller-ID-Name"] == "Caller 2125550123"
    assert create["FreeSWITCH-IPv6"] == "fd00::2"
    assert create["Channel-Name"] == "sofia/internal/2125550123@127.0.0.1:5190"
    assert re.fullmatch(r"\w{3}, \d\d \w{3} 2026 \d\d:\d\d:\d\d GMT", create["Event-Date-GMT"])
    execute = next(e for e in events if e.name == "CHANNEL_EXECUTE" and e["Application"] == "play_and_get_digits")
    # The sendmsg'd argument comes back encoded (%25 for '%', %23 for '#', %5C for '\').
    assert execute["Application-Data"] == (
        "1 1 1 5000 # tone_stream://%(200,0,800) tone_stream://%(200,0,400) cc_digit \\d 3000"
    )
    assert execute["Application-UUID"] == "d63240f4-1b5e-4d1e-9241-a08c23dcd9f1"
    assert execute.text is not None
    eager = decode_event(EslFrame({"Content-Type": "text/event-plain"}, execute.text.encode()), lazy=False)
    assert eager.headers["Application-Data"] == execute["Application-Data"]


def test_private_command_event_does_not_start_with_its_name() -> None:
    events = events_of(FIXTURES / "sendmsg_ivr.esl.txt")
    private = [e for e in events if e.name == "PRIVATE_COMMAND"]
    assert len(private) == 2
    assert private[0].text is not None and private[0].text.startswith("Command: sendmsg%20")
    assert private[0]["Command"] == "sendmsg 2fcc1294-e632-4ebe-9bee-e3a33ed7346e"
    assert private[0]["execute-app-name"] == "play_and_get_digits"


def test_inner_bodies() -> None:
    job = next(e for e in events_of(FIXTURES / "sendmsg_ivr.esl.txt") if e.name == "BACKGROUND_JOB")
    assert job.job_uuid == "44b4f706-de84-4eed-a0e5-79312cdfb044"
    assert job["Job-Command"] == "uuid_transfer"
    assert job["Job-Command-Arg"] == "2fcc1294-e632-4ebe-9bee-e3a33ed7346e queue_sales XML public"
    assert job["Content-Length"] == "4" and job.body == "+OK\n"
    origin = next(e for e in events_of(FIXTURES / "whisper_barge.esl.txt") if e.name == "BACKGROUND_JOB")
    assert origin.body == "+OK e8487226-4657-41e3-b62b-c182b6056711\n"
    assert origin["Job-Command-Arg"].endswith("&eavesdrop(a433cd3b-7dca-4fd1-b1bd-4b721de2ef71)")
    info = next(e for e in events_of(PLAIN_TWIN) if e.name == "RECV_INFO")
    assert info.body == "Signal=1\r\nDuration=160\r\n"
    plain_heartbeat = next(e for e in events_of(FIXTURES / "whisper_barge.esl.txt") if e.name == "HEARTBEAT")
    assert plain_heartbeat.body is None
    assert plain_heartbeat["Up-Time"].startswith("0 years, 0 days")


def test_a_header_only_in_the_inner_body_is_not_a_header() -> None:
    text = "Event-Name: BACKGROUND_JOB\nJob-UUID: j1\nContent-Length: 30\n\nUnique-ID: x\nCaller-Name: y\n\n"
    for ev in (EslEvent.from_plain(text), decode_event(EslFrame({"Content-Type": "text/event-plain"}, text.encode()))):
        assert ev.get("Unique-ID") is None and "Caller-Name" not in ev
        assert ev.body == "Unique-ID: x\nCaller-Name: y\n\n"
        assert ev.headers == {"Event-Name": "BACKGROUND_JOB", "Job-UUID": "j1", "Content-Length": "30"}


def align(plain: list[EslEvent], js: list[EslEvent]) -> list[tuple[EslEvent, EslEvent]]:
    """Pair the events of the two runs of one scenario (two legs race, so the orders differ a
    little: 90 plain vs 89 json events)."""

    def key(e: EslEvent) -> tuple[str | None, ...]:
        return tuple(e.get(k) for k in ("Event-Name", "CC-Action", "Application", "Channel-State", "Call-Direction"))

    sm = difflib.SequenceMatcher(a=[key(e) for e in plain], b=[key(e) for e in js], autojunk=False)
    return [(plain[i + k], js[j + k]) for i, j, n in sm.get_matching_blocks() for k in range(n)]


def run_specific(value: str) -> str:
    """Mask what differs between two runs: uuids, numbers, SIP tags/branches."""
    value = UUID.sub("U", value)
    value = re.sub(r"(tag=|branch=z9hG4bK)[\w.-]+", r"\1T", value)
    return re.sub(r"\d+", "0", value)


def test_plain_and_json_runs_of_one_call_give_the_same_header_values() -> None:
    plain = events_of(PLAIN_TWIN)
    js = events_of(JSON_TWIN)
    assert {e.format for e in plain} == {"plain"} and {e.format for e in js} == {"json"}
    pairs = align(plain, js)
    assert len(pairs) >= 85
    identical = 0
    for p, j in pairs:
        assert list(p.headers) == list(j.headers), p.name
        assert (p.body is None) == (j.body is None)
        assert list(p.repeated) == list(j.repeated), p.name  # cJSON keeps duplicate keys too
        assert [k for k, _ in p.items()] == [k for k, _ in j.items()]
        for key, value in p.headers.items():
            other = j.headers[key]
            if value == other:
                identical += 1
            elif key not in ("variable_sip_to_tag", "variable_sip_from_tag"):  # random per run
                assert run_specific(value) == run_specific(other), (p.name, key, value, other)
    # Most values are byte-identical across the runs (names, states, URL-decoded addresses...).
    assert identical >= 8000


def test_array_headers_are_the_same_in_both_formats() -> None:
    for path in (PLAIN_TWIN, JSON_TWIN):
        bridge = next(e for e in events_of(path) if e.get("variable_DP_MATCH"))
        assert bridge["variable_DP_MATCH"] == "ARRAY::queue_1|:1"
        assert bridge.get_all("variable_DP_MATCH") == ("queue_1", "1")
        history = next(e for e in events_of(path) if (e.get("variable_transfer_history") or "").startswith("ARRAY::"))
        items = history.get_all("variable_transfer_history")
        assert len(items) == 2 and ":bl_xfer:queue_1/public/XML" in items[0]


def test_repeated_headers_last_value_wins() -> None:
    # park_controller_flow: uuid_broadcast's COMMAND event re-delivered as PRIVATE_COMMAND carries
    # the standard block twice; the last one describes the delivered event.
    events = events_of(FIXTURES / "park_controller_flow.esl.txt")
    redelivered = next(e for e in events if len(e.get_all("Event-Name")) == 2)
    assert redelivered.get_all("Event-Name") == ("COMMAND", "PRIVATE_COMMAND")
    assert redelivered.name == "PRIVATE_COMMAND" and redelivered["Event-Name"] == "PRIVATE_COMMAND"
    assert redelivered.headers["Event-Sequence"] == redelivered.get_all("Event-Sequence")[-1]
    eager = decode_event(EslFrame({"Content-Type": "text/event-plain"}, (redelivered.text or "").encode()), lazy=False)
    assert eager.name == "PRIVATE_COMMAND" and eager.repeated == redelivered.repeated
    codec = next(e for e in events_of(JSON_TWIN) if e.name == "CODEC" and e.repeated)
    assert codec.get_all("Channel-Write-Codec-Name") == ("PCMU", "PCMU")
    names = [k for k, _ in codec.items()]
    assert names.count("Channel-Write-Codec-Name") == 2


def test_json_custom_events_start_with_the_subclass() -> None:
    custom = [e for e in events_of(JSON_TWIN) if e.name == "CUSTOM"]
    assert custom and all(e.text is not None and e.text.startswith('{"Event-Subclass":') for e in custom)
    assert {e.subclass for e in custom} == {"callcenter::info"}
    assert {e["CC-Action"] for e in custom} >= {"member-queue-start", "bridge-agent-start", "member-queue-end"}
    info = next(e for e in events_of(JSON_TWIN) if e.name == "RECV_INFO")
    assert info.body == "Signal=1\r\nDuration=160\r\n" and info["Content-Length"] == "24"


def test_non_compact_json_and_escapes() -> None:
    text = '{ "Event-Name" : "CUSTOM", "Unique-ID": "u\\"1", "A": ["x", "y"], "_body": "b\\nc" }'
    ev = EslEvent.from_json(text)
    assert ev.name == "CUSTOM" and ev["Unique-ID"] == 'u"1' and ev["A"] == "ARRAY::x|:y" and ev.body == "b\nc"
    compact = EslEvent.from_json('{"Event-Name":"X","Name":"a\\u00fcb\\"c","N":"1"}')
    assert compact["Name"] == 'aüb"c' and compact.get("Missing") is None
    with pytest.raises(EslDecodeError):
        EslEvent.from_json("[1, 2]")
    with pytest.raises(EslDecodeError):
        EslEvent.from_json('{"Event-Name":"X","Bad":').headers  # noqa: B018


def test_event_value_semantics() -> None:
    lazy = events_of(FIXTURES / "sendmsg_ivr.esl.txt")[5]
    built = EslEvent(dict(lazy.headers), lazy.body)
    assert built == lazy and lazy == built
    assert pickle.loads(pickle.dumps(lazy)) == lazy
    assert built.format is None and lazy.format == "plain"
    assert built.call_id == lazy.call_id == lazy["Unique-ID"]
    with pytest.raises(KeyError):
        lazy["No-Such"]
    with pytest.raises(TypeError):
        hash(lazy)
    assert "EslEvent(headers=" in repr(lazy)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_url_decode_matches_the_stdlib(text: str) -> None:
    assert url_decode(quote(text, safe="")) == text
    assert url_decode(text) == unquote(text)
    weird = text.replace("a", "%").replace("b", "%4")
    assert url_decode(weird) == unquote(weird)


# -- commands ------------------------------------------------------------------------------------
def test_encoders_reproduce_the_captured_commands() -> None:
    sent = sent_frames(FIXTURES / "sendmsg_ivr.esl.txt")
    assert sent[0] == encode_auth("ClueCon")
    assert sent[1] == encode_event_subscription("plain", ["ALL"])
    assert sent[2] == encode_api("create_uuid")
    uuid = "2fcc1294-e632-4ebe-9bee-e3a33ed7346e"
    assert sent[3] == encode_execute(
        uuid,
        "play_and_get_digits",
        "1 1 1 5000 # tone_stream://%(200,0,800) tone_stream://%(200,0,400) cc_digit \\d 3000",
        event_lock=True,
        event_uuid="d63240f4-1b5e-4d1e-9241-a08c23dcd9f1",
    )
    assert sent[4] == encode_execute(uuid, "set", "cc_after_ivr=yes")
    assert sent[5] == encode_api(f"uuid_setvar {uuid} cc_base_score 1000")
    assert sent[7] == encode_bgapi(f"uuid_transfer {uuid} queue_sales XML public")
    assert sent[-1] == encode_exit()
    assert encode_event_subscription("json", ["ALL"]) == sent_frames(JSON_TWIN)[1]


def test_bgapi_carries_our_job_uuid() -> None:
    data = encode_bgapi("originate sofia/internal/1001@127.0.0.1:5181 &park()", "job-1")
    (frame,) = EslParser(commands=True).feed(data)
    assert frame.command == "bgapi originate sofia/internal/1001@127.0.0.1:5181 &park()"
    assert frame.headers["Job-UUID"] == "job-1"


@pytest.mark.parametrize("path", TRACES, ids=ids)
def test_command_mode_parses_every_captured_command(path: Path) -> None:
    sent = sent_frames(path)
    frames = EslParser(commands=True).feed(b"".join(sent))
    assert len(frames) == len(sent)
    for frame, data in zip(frames, sent, strict=True):
        assert frame.command == data.split(b"\n", 1)[0].decode()


def test_sendmsg_headers_as_freeswitch_reads_them() -> None:
    (frame,) = EslParser(commands=True).feed(sent_frames(FIXTURES / "sendmsg_ivr.esl.txt")[3])
    assert frame.headers["call-command"] == "execute"
    assert frame.headers["execute-app-name"] == "play_and_get_digits"
    assert frame.headers["event-lock"] == "true"
    body = encode_sendmsg("u1", [("call-command", "execute"), ("content-type", "text/plain")], "a\nb")
    (frame,) = EslParser(commands=True).feed(body)
    assert frame.body == b"a\nb" and frame.headers["Content-Length"] == "3"


BAD_TEXT = st.builds(
    lambda a, bad, b: a + bad + b,
    st.text(max_size=10),
    st.sampled_from(["\r", "\n", "\0", "\r\n", "\n\n"]),
    st.text(max_size=10),
)


@given(BAD_TEXT)
def test_injection_is_refused_everywhere(bad: str) -> None:
    calls = [
        lambda: encode_api("status " + bad),
        lambda: encode_bgapi("status " + bad),
        lambda: encode_bgapi("status", bad),
        lambda: encode_auth("pw" + bad),
        lambda: encode_command("filter " + bad),
        lambda: encode_command("nixevent ALL", [("X-Header", bad)]),
        lambda: encode_execute("u1", "playback", bad),
        lambda: encode_execute("u1", "playback", "x", event_uuid=bad),
        lambda: encode_sendmsg("u1" + bad),
        lambda: encode_filter("Unique-ID", bad),
        lambda: encode_event_subscription("json", ["CHANNEL_CREATE", bad]),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


@given(st.text(min_size=1, max_size=40).filter(lambda s: not any(c in s for c in "\r\n\0") and s.strip()))
def test_a_clean_command_is_exactly_one_command(text: str) -> None:
    frames = EslParser(commands=True).feed(encode_api(text) + encode_exit())
    assert [f.command for f in frames] == ["api " + text.strip(), "exit"]


def test_header_names_and_content_length_are_checked() -> None:
    for name in ("", "a b", "a:b", "x\n", "Ünicode"):
        with pytest.raises(ValueError):
            encode_command("sendevent CUSTOM", [(name, "v")])
    with pytest.raises(ValueError, match="Content-Length"):
        encode_command("sendmsg u1", [("content-length", "5")])
    with pytest.raises(ValueError):
        encode_command("   ")
    with pytest.raises(ValueError):
        encode_event_subscription("yaml", ["ALL"])
    with pytest.raises(ValueError):
        encode_event_subscription("json", [])
    with pytest.raises(ValueError):
        encode_execute("u1", "play back")
    with pytest.raises(ValueError):
        encode_auth("")
    with pytest.raises(TypeError):
        encode_api(b"status")  # type: ignore[arg-type]


def test_mask_secrets() -> None:
    assert mask_secrets(b"auth ClueCon\n\n") == b"auth ********\n\n"
    assert mask_secrets(b"AUTH x y z\n\n") == b"AUTH ********\n\n"
    assert mask_secrets(b"userauth ctl@default:pw\n\n") == b"userauth ctl@default:********\n\n"
    assert mask_secrets(b"api status\n\n") == b"api status\n\n"
    assert split_api("uuid_setvar u1 x 1") == ("uuid_setvar", "u1 x 1")
    assert split_api("status") == ("status", None)


# -- lookup edge cases (one reverse search per header, separator included) -------------------------
def both(plain: str, js: str) -> list[EslEvent]:
    """A lazy event per format and its fully decoded twin of each."""
    lazy = [EslEvent.from_plain(plain), EslEvent.from_json(js)]
    eager = [EslEvent.from_plain(plain), EslEvent.from_json(js)]
    for e in eager:
        e.headers  # noqa: B018 - materialise
    return lazy + eager


def test_a_lookup_finds_the_header_not_a_longer_name_ending_in_it() -> None:
    plain = "Event-Name: X\nUnique-ID: u1\nCaller-Unique-ID: c1\nOther-Leg-Unique-ID: o1\nCC-Node: n\n\n"
    js = '{"Event-Name":"X","Unique-ID":"u1","Caller-Unique-ID":"c1","Other-Leg-Unique-ID":"o1","CC-Node":"n"}'
    for ev in both(plain, js):
        assert ev["Unique-ID"] == "u1" and ev["Caller-Unique-ID"] == "c1" and ev["Other-Leg-Unique-ID"] == "o1"
        assert ev.get("Leg-Unique-ID") is None and ev.get("ID") is None and ev.get("Node") is None
        assert ev.get("Event-Name") == "X" and ev.name == "X"
        assert ev.get("Name") is None and ev.get("vent-Name") is None


def test_first_line_and_repeated_headers_last_wins_in_the_header_block_only() -> None:
    # Unique-ID on the first line and again later: the later one wins; the body's lines are no
    # headers, even when they look like one (a fake Content-Length included).
    body = "Unique-ID: c\nContent-Length: 3\n\nxyz"
    plain = f"Unique-ID: a\nEvent-Name: X%20Y\nUnique-ID: b\nContent-Length: {len(body)}\n\n{body}"
    js = '{"Unique-ID":"a","Event-Name":"X Y","Unique-ID":"b","Content-Length":"' + str(len(body)) + '"'
    js += ',"_body":' + json.dumps(body) + "}"
    for ev in both(plain, js):
        assert ev["Unique-ID"] == "b" and ev.get_all("Unique-ID") == ("a", "b")
        assert ev.name == "X Y" and ev.body == body
        assert ev.get("xyz") is None
    only_first = EslEvent.from_plain("Event-Name: ONLY\nA: 1\n\n")
    assert only_first.name == "ONLY" and only_first.body is None and only_first["A"] == "1"
    # The first line is a header even when the body repeats its name.
    tricky = EslEvent.from_plain("Event-Name: REAL\nContent-Length: 16\n\nEvent-Name: FAKE")
    assert tricky.name == "REAL" and tricky.get("Event-Name") == "REAL" and tricky.body == "Event-Name: FAKE"


def test_no_inner_content_length_means_no_body() -> None:
    # A longer name ending in Content-Length is not the inner Content-Length.
    ev = EslEvent.from_plain("Event-Name: X\nX-Content-Length: 5\n\n")
    assert ev.body is None and ev["X-Content-Length"] == "5" and ev.get("Content-Length") is None
    first = EslEvent.from_plain("Content-Length: 2\n\nhi")
    assert first.body == "hi" and first["Content-Length"] == "2"


def test_json_name_is_the_last_and_decoded_like_any_value() -> None:
    redelivered = EslEvent.from_json('{"Event-Name":"COMMAND","A":"1","Event-Name":"PRIVATE_COMMAND"}')
    assert redelivered.name == "PRIVATE_COMMAND" == redelivered.headers["Event-Name"]
    escaped = EslEvent.from_json('{"Event-Name":"A\\"B","Unique-ID":"u"}')
    assert escaped.name == 'A"B' and escaped["Unique-ID"] == "u"
    number = EslEvent.from_json('{"Event-Name":"X","Event-Name":7}')
    assert number.name == "7" == number.headers["Event-Name"]
    nameless = EslEvent.from_json('{"A":"1"}')
    assert nameless.name == "" and nameless.get("Event-Name") is None


# -- the JSON fast path: envelope, name/subclass taken up front, lookups --------------------------
def json_frame(body: bytes) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(body) + body


def feed_events_in_pieces(data: bytes, cuts: list[int]) -> tuple[list[EslFrame | EslEvent], EslParser]:
    parser = EslParser()
    out: list[EslFrame | EslEvent] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out.extend(parser.feed_events(data[prev:cut]))
        prev = cut
    return out, parser


@given(name=st.text(min_size=1, max_size=20), data=st.data())
@settings(max_examples=60, deadline=None)
def test_feed_events_utf8_split_across_reads_is_whole_again(name: str, data: st.DataObject) -> None:
    # The client's path decodes each event straight from the read buffer: a read boundary
    # inside a character (of the name, the subclass or a value) must not break it.
    full = f"Иванова {name} Jürgen"
    pairs = [("Event-Subclass", f"cc::{full}"), ("Event-Name", "CUSTOM"), ("Caller-Caller-ID-Name", full)]
    body = ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in pairs) + "}").encode()
    raw = json_frame(body) * 2
    start = raw.index("И".encode())
    cut = data.draw(st.integers(start, len(raw) - 1))
    got, parser = feed_events_in_pieces(raw, [cut, cut + 1])
    assert len(got) == 2 and parser.decode_errors == 0 and parser.pending == b""
    for ev in got:
        assert isinstance(ev, EslEvent)
        assert ev["Caller-Caller-ID-Name"] == full and ev.subclass == f"cc::{full}" and ev.name == "CUSTOM"


@pytest.mark.parametrize(
    ("body", "name", "subclass"),
    [
        ('{"Event-Name":"COMMAND","A":"1","Event-Name":"PRIVATE_COMMAND"}', "PRIVATE_COMMAND", None),
        ('{"Event-Name":"A\\"B","Event-Name":"C"}', "C", None),
        ('{"Event-Name":"A\\"B","U":"1"}', 'A"B', None),
        ('{"Event-Name":"X","Event-Name":["a","b"]}', "ARRAY::a|:b", None),
        ('{"Event-Subclass":"a::b","Event-Name":"CUSTOM","U":"1"}', "CUSTOM", "a::b"),
        ('{"Event-Subclass":"a::b","Event-Name":"CUSTOM","Event-Subclass":"c::d"}', "CUSTOM", "c::d"),
        ('{"Event-Subclass":"a::b","Event-Name":"CUSTOM","X":"1","Event-Name":"OTHER"}', "OTHER", "a::b"),
        ('{"Event-Subclass":"a\\"b","Event-Name":"CUSTOM"}', "CUSTOM", 'a"b'),
        ('{"Event-Subclass":"a::b","U":"1","Event-Name":"CUSTOM"}', "CUSTOM", "a::b"),
        ('{"Event-Subclass":"a::b","Event-Name":"CUSTOM","_body":"\\"Event-Name\\":\\"NOT\\""}', "CUSTOM", "a::b"),
        ('{"Unique-ID":"u","Event-Name":"LATER"}', "LATER", None),
    ],
)
def test_name_and_subclass_taken_up_front_are_the_last_ones(body: str, name: str, subclass: str | None) -> None:
    # The framer takes the name (and a CUSTOM event's subclass) when the event starts with them;
    # a later occurrence must still win, whatever way the event is built.
    (framed,), _ = feed_events_in_pieces(json_frame(body.encode()), [])
    for ev in (framed, EslEvent.from_json(body)):
        assert isinstance(ev, EslEvent)
        assert ev.name == name and ev.subclass == subclass
        full = EslEvent.from_json(body)
        assert ev.headers == full.headers and ev.name == full.headers.get("Event-Name")


json_values = st.one_of(
    st.text(max_size=8),
    st.sampled_from(['a"b', "a\\b", '","X":"', '"Event-Name":"', "é€😀", ""]),
    st.lists(st.text(max_size=4), max_size=3),
)


@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(["Event-Name", "Event-Subclass", "Unique-ID", "Caller-Unique-ID", "A", "B"]), json_values
        ),
        min_size=1,
        max_size=10,
    ),
    probe=st.lists(st.sampled_from(["Event-Name", "Event-Subclass", "Unique-ID", "Caller-Unique-ID", "A", "B", "C"])),
)
@settings(max_examples=300, deadline=None)
def test_lazy_json_lookups_are_the_last_occurrence(pairs: list[tuple[str, object]], probe: list[str]) -> None:
    # Repeated names, escapes, needles inside values, arrays, non-ASCII: every lookup (in any
    # order, repeated) equals what json.loads keeps for duplicate keys - the last value.
    body = (
        "{"
        + ",".join(f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False, separators=(',', ':'))}" for k, v in pairs)
        + "}"
    )
    (framed,), parser = feed_events_in_pieces(json_frame(body.encode()), [])
    assert parser.malformed == 0
    expected = EslEvent.from_json(body).headers
    for ev in (framed, EslEvent.from_json(body)):
        assert isinstance(ev, EslEvent)
        for key in [*probe, *probe]:
            assert ev.get(key) == expected.get(key), (key, body)
        assert ev.name == expected.get("Event-Name", "")
        assert ev.subclass == expected.get("Event-Subclass")


def test_event_envelope_lengths_are_checked() -> None:
    with pytest.raises(EslProtocolError, match="bad Content-Length"):
        EslParser().feed_events(b"Content-Length: 1x\nContent-Type: text/event-json\n\n{}")
    with pytest.raises(EslProtocolError, match="limit"):
        EslParser().feed_events(b"Content-Length: 1234567890123\nContent-Type: text/event-json\n\n{}")
    with pytest.raises(EslProtocolError, match="limit"):
        EslParser(max_frame_size=10).feed_events(json_frame(b'{"Event-Name":"HEARTBEAT"}'))
    (frame,) = EslParser().feed(json_frame(b'{"Event-Name":"HEARTBEAT"}'))
    assert frame.headers == {"Content-Length": "26", "Content-Type": "text/event-json"}
    assert decode_event(frame).name == "HEARTBEAT"


def test_truncated_and_odd_json_values() -> None:
    for text in ('{"Event-Name":"X","A":', '{"Event-Name":"X","A":"unterminated'):
        ev = EslEvent.from_json(text)
        assert ev.name == "X"
        with pytest.raises(EslDecodeError):
            ev.get("A")
    ev = EslEvent.from_json('{"Event-Name":"X","A":"","N":12,"L":["p","q"],"E":"a\\u00e9\\"b"}')
    assert ev["A"] == "" and ev["N"] == "12" and ev["L"] == "ARRAY::p|:q" and ev["E"] == 'aé"b'
