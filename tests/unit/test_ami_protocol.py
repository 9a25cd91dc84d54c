"""The sans-I/O AMI parser/encoder against the real Asterisk 22 captures."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.pbx.asterisk.message import AmiMessage
from callcenter.pbx.asterisk.protocol import (
    AmiParser,
    agi_result,
    encode_action,
    encode_fields,
    parse_agi_env,
    parse_agi_result,
)
from callcenter.pbx.asterisk.trace import read_trace

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"
TRACES = sorted(FIXTURES.glob("*.ami.txt"))


@cache
def recv_frames(name: str) -> tuple[bytes, ...]:
    return tuple(f.data for f in read_trace(FIXTURES / name) if f.direction == "recv")


def reference_headers(frame: bytes) -> list[tuple[str, str]]:
    """Independent, naive reading of one captured frame: every line is ``Key: value``."""
    lines = frame.decode("utf-8").split("\r\n")
    assert lines[-2:] == ["", ""]
    return [tuple(line.split(": ", 1)) for line in lines[:-2]]  # type: ignore[misc]


def as_tuple(msg: AmiMessage) -> tuple[object, object]:
    return (msg.headers, msg.repeated)


def feed_in_pieces(data: bytes, cuts: list[int], **kw: object) -> tuple[list[AmiMessage], AmiParser]:
    parser = AmiParser(**kw)  # type: ignore[arg-type]
    out: list[AmiMessage] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out.extend(parser.feed(data[prev:cut]))
        prev = cut
    return out, parser


def test_fixtures_present() -> None:
    # The suite is only meaningful with the captures; a missing directory must fail loudly.
    assert len(TRACES) >= 10


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name.split(".")[0])
def test_fixture_parses_to_one_message_per_recv_frame(path: Path) -> None:
    frames = recv_frames(path.name)
    parser = AmiParser(keep_raw=True)
    msgs = parser.feed(b"".join(frames))
    assert len(msgs) == len(frames)
    assert parser.pending == b""
    assert parser.decode_errors == 0 and parser.malformed == 0
    assert msgs[0].banner == "Asterisk Call Manager/11.0.0"
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    for msg, frame in zip(msgs[1:], frames[1:], strict=True):
        assert msg.raw == frame
        ref = reference_headers(frame)
        # first value per key, in order, exactly as in the capture
        first: dict[str, str] = {}
        for k, v in ref:
            first.setdefault(k, v)
        assert msg.headers == first
        for k, v in first.items():
            assert msg.get(k) == v  # lazy lookup agrees with the built dict
        assert msg.is_event != msg.is_response


def test_lazy_lookup_matches_built_headers_before_materialising() -> None:
    frames = recv_frames("status_queries.ami.txt")
    msgs = AmiParser().feed(b"".join(frames))
    fresh = AmiParser().feed(b"".join(frames))
    for lazy, built in zip(fresh[1:], msgs[1:], strict=True):
        for key, value in built.headers.items():
            assert lazy.get_exact(key) == value
            assert lazy.get(key.lower()) == value  # case-insensitive fallback on the text
        assert lazy.get("NoSuchHeader") is None
        assert lazy.get_exact("linkedid") is None or "linkedid" in built.headers
    assert fresh == msgs


def test_banner_split_across_reads_and_absent_banner() -> None:
    parser = AmiParser()
    assert parser.feed(b"Asterisk Call") == []
    assert parser.feed(b" Manager/11.0.0\r") == []
    msgs = parser.feed(b"\nResponse: Success\r\nActionID: a\r\n\r\n")
    assert [m.banner for m in msgs] == ["Asterisk Call Manager/11.0.0", None]
    assert msgs[1].response == "Success" and msgs[1].action_id == "a"

    # A server without a greeting: the first line is already a header.
    msgs = AmiParser().feed(b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n")
    assert len(msgs) == 1 and msgs[0].event == "FullyBooted" and msgs[0].banner is None


def test_modern_command_output_is_repeated_output_headers() -> None:
    data = (
        b"Response: Success\r\nActionID: c1\r\nMessage: Command output follows\r\n"
        b"Output: line one\r\nOutput: \r\nOutput: line: three\r\n\r\n"
    )
    (msg,) = AmiParser(expect_banner=False).feed(data)
    assert msg.get("Output") == "line one"
    assert msg.get_all("Output") == ("line one", "", "line: three")
    assert msg.output == "line one\n\nline: three"


def test_response_follows_with_blank_lines_until_end_command() -> None:
    data = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: x1\r\n"
        b"Name: not a header\nsecond line\n\nafter a blank line\n--END COMMAND--\r\n\r\n"
        b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n"
    )
    for cuts in ([], [40], [70, 90, 100], list(range(1, len(data), 7))):
        msgs, parser = feed_in_pieces(data, cuts, expect_banner=False)
        assert [m.response for m in msgs] == ["Follows", None], cuts
        follows = msgs[0]
        assert follows.action_id == "x1"
        assert follows.get("Privilege") == "Command"
        assert follows.get_all("Output") == ("Name: not a header", "second line", "", "after a blank line")
        assert msgs[1].event == "FullyBooted"
        assert parser.malformed == 0


def test_response_follows_without_marker_does_not_swallow_the_stream() -> None:
    reasons: list[str] = []
    parser = AmiParser(expect_banner=False, on_malformed=lambda raw, why: reasons.append(why))
    msgs = parser.feed(
        b"Response: Follows\r\nActionID: x2\r\nsome output\r\n\r\nmore output\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"
    )
    assert [m.response or m.event for m in msgs] == ["Follows", "Hangup"]
    assert msgs[0].get_all("Output") == ("some output", "", "more output")
    assert parser.malformed == 1 and "END COMMAND" in reasons[0]


def test_repeated_keys_from_status_with_variables() -> None:
    msgs = AmiParser().feed(b"".join(recv_frames("status_queries.ami.txt")))
    status = [m for m in msgs if m.event == "Status" and len(m.get_all("Variable")) > 1]
    assert status, "the status_queries trace has a Status with Variables"
    msg = status[0]
    assert msg.get_all("Variable") == ("CC_QUEUE=sales", "CC_DID=5550100", "MEMBERINTERFACE=PJSIP/1001")
    assert msg.get("Variable") == "CC_QUEUE=sales"
    assert msg["ActionID"] == "status-10"


def test_empty_values_are_empty_strings_not_missing() -> None:
    msgs = AmiParser().feed(b"".join(recv_frames("status_queries.ami.txt")))
    chan = next(m for m in msgs if m.event == "CoreShowChannel")
    assert chan.get("AccountCode") == ""
    assert "AccountCode" in chan
    assert chan.get("BridgeId") is not None
    getvar_unset = AmiParser(expect_banner=False).feed(
        b"Response: Success\r\nActionID: g\r\nVariable: CC_NOT_SET\r\nValue: \r\n\r\n"
    )[0]
    assert getvar_unset.get("Value") == "" and getvar_unset.headers["Value"] == ""


def test_lines_without_colon_space_are_kept_as_output() -> None:
    (msg,) = AmiParser(expect_banner=False).feed(
        b"Response: Success\r\nActionID: q\r\nfree text line\r\nEmptyKey:\r\n\r\n"
    )
    assert msg.get_all("Output") == ("free text line",)
    assert msg.get("EmptyKey") == ""
    assert msg.action_id == "q"


def test_malformed_frame_is_reported_and_parsing_continues() -> None:
    seen: list[tuple[bytes, str]] = []
    parser = AmiParser(expect_banner=False, keep_raw=True, on_malformed=lambda raw, why: seen.append((raw, why)))
    msgs = parser.feed(
        b"Event: Newchannel\r\nUniqueid: 1.1\r\n\r\n"
        b"\x00\x01garbage without header\r\nmore\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"
    )
    assert [m.event for m in msgs] == ["Newchannel", "Hangup"]
    assert parser.malformed == 1
    assert seen[0][0] == b"\x00\x01garbage without header\r\nmore\r\n\r\n"


def test_oversized_message_is_dropped_and_stream_recovers() -> None:
    parser = AmiParser(expect_banner=False, max_message_size=1000)
    assert parser.feed(b"Event: Huge\r\nData: " + b"x" * 2000) == []
    assert parser.malformed == 1
    msgs = parser.feed(b"\r\n\r\nEvent: Hangup\r\nUniqueid: 2.2\r\n\r\n")
    assert [m.event for m in msgs] == ["Hangup"]


def test_utf8_name_split_inside_the_multibyte_character() -> None:
    data = "Event: Newchannel\r\nCallerIDName: Jürgen Müller\r\nUniqueid: 1.1\r\n\r\n".encode()
    inside = data.index("ü".encode()) + 1  # between the two bytes of 'ü'
    for cut in range(inside - 3, inside + 3):
        msgs, parser = feed_in_pieces(data, [cut], expect_banner=False)
        assert msgs[0].get("CallerIDName") == "Jürgen Müller"
        assert parser.decode_errors == 0
    # one byte per read
    msgs, parser = feed_in_pieces(data, list(range(len(data))), expect_banner=False)
    assert msgs[0].get("CallerIDName") == "Jürgen Müller"


def test_invalid_utf8_is_replaced_counted_and_isolated() -> None:
    parser = AmiParser(expect_banner=False)
    msgs = parser.feed(
        b"Event: A\r\nName: ok\r\n\r\nEvent: B\r\nName: J\xfcrgen\r\n\r\nEvent: C\r\nName: J\xc3\xbcrgen\r\n\r\n"
    )
    assert [m.event for m in msgs] == ["A", "B", "C"]
    assert msgs[1].get("Name") == "J\ufffdrgen"
    assert msgs[2].get("Name") == "Jürgen"
    assert parser.decode_errors == 1


def test_bare_lf_peer_is_tolerated() -> None:
    data = b"Event: FullyBooted\nStatus: Fully Booted\n\nResponse: Success\nActionID: 7\n\n"
    for cuts in ([], [19], [20, 21, 40]):
        msgs, _ = feed_in_pieces(data, cuts, expect_banner=False)
        assert [(m.event, m.response) for m in msgs] == [("FullyBooted", None), (None, "Success")]
        assert msgs[0].get("Status") == "Fully Booted"
        assert msgs[1].action_id == "7"


def test_extra_blank_lines_between_messages_are_skipped() -> None:
    msgs = AmiParser(expect_banner=False).feed(b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\n\r\nEvent: B\r\nX: 1\r\n\r\n")
    assert [m.event for m in msgs] == ["A", "B"]


def test_originate_response_is_an_event_even_with_response_header() -> None:
    msgs = AmiParser().feed(b"".join(recv_frames("whisper_barge.ami.txt")))
    orig = [m for m in msgs if m.get("Event") == "OriginateResponse"]
    assert len(orig) == 2
    for m in orig:
        assert m.is_event and not m.is_response
        assert m.response is None
        assert m.headers["Response"] == "Success"
        assert m.action_id in ("orig-whisper", "orig-barge")


def test_message_value_semantics() -> None:
    lazy = AmiParser(expect_banner=False).feed(b"Event: A\r\nK: v\r\nK: w\r\n\r\n")[0]
    built = AmiMessage({"Event": "A", "K": "v"}, {"K": ("v", "w")})
    assert lazy == built
    assert lazy != AmiMessage({"Event": "A", "K": "v"})
    assert built.text == "Event: A\r\nK: v\r\nK: w"
    with pytest.raises(AttributeError):
        built.headers = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(built)
    with pytest.raises(KeyError):
        built["missing"]


# -- encoding -------------------------------------------------------------------------------------
def test_encode_action_is_crlf_framed_in_order() -> None:
    data = encode_action("Originate", [("Channel", "PJSIP/1009"), ("Variable", "A=1"), ("Variable", "B=2")], "o-1")
    assert data == (
        b"Action: Originate\r\nActionID: o-1\r\nChannel: PJSIP/1009\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    )
    assert encode_action("Ping") == b"Action: Ping\r\n\r\n"
    assert encode_action("Setvar", {"Value": ""}, "s") == b"Action: Setvar\r\nActionID: s\r\nValue: \r\n\r\n"
    assert encode_action("Getvar", {"Variable": "CALLERID(name)"}, "g").decode().endswith("(name)\r\n\r\n")
    assert encode_action("QueueAdd", {"Penalty": 2}, "q").endswith(b"Penalty: 2\r\n\r\n")


@pytest.mark.parametrize(
    "headers",
    [
        {"Channel": "PJSIP/x\r\nAction: Hangup"},
        {"Channel": "a\nb"},
        {"Channel": "a\rb"},
        {"Channel": "a\0b"},
        {"Bad\r\nKey": "v"},
        {"Bad: Key": "v"},
        {"": "v"},
    ],
)
def test_header_injection_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        encode_action("Getvar", headers, "id-1")


def test_action_name_and_action_id_are_validated_too() -> None:
    with pytest.raises(ValueError):
        encode_action("Ping\r\nAction: Hangup", (), "id")
    with pytest.raises(ValueError):
        encode_action("Ping", (), "id\r\nChannel: x")
    with pytest.raises(ValueError):
        encode_action("Ping", {"ActionID": "other"}, "id")
    with pytest.raises(TypeError):
        encode_action("Ping", {"X": None}, "id")  # type: ignore[dict-item, arg-type]
    assert encode_fields([("Event", "X")]) == b"Event: X\r\n\r\n"


def test_encoded_action_round_trips_through_the_parser() -> None:
    data = encode_action("AGI", [("Channel", "PJSIP/pstn-00000000"), ("Command", 'STREAM FILE hello-world ""')], "a")
    (msg,) = AmiParser(expect_banner=False).feed(data)
    assert msg.headers == {
        "Action": "AGI",
        "ActionID": "a",
        "Channel": "PJSIP/pstn-00000000",
        "Command": 'STREAM FILE hello-world ""',
    }


# -- AsyncAGI helpers -----------------------------------------------------------------------------
def test_agi_results_from_the_asyncagi_trace() -> None:
    msgs = AmiParser().feed(b"".join(recv_frames("asyncagi_ivr.ami.txt")))
    execs = {m["CommandId"]: agi_result(m) for m in msgs if m.event == "AsyncAGIExec"}
    assert execs["c1-stream"].code == 200
    assert execs["c1-stream"].result == "0" and execs["c1-stream"].data == "endpos=11360"
    assert execs["c2-getdata"].value == 1  # the caller pressed 1
    assert all(r.ok for r in execs.values())
    start = next(m for m in msgs if m.event == "AsyncAGIStart")
    env = parse_agi_env(start["Env"])
    assert env["agi_channel"] == "PJSIP/pstn-00000000"
    assert env["agi_uniqueid"] == start["Uniqueid"]
    assert env["agi_accountcode"] == ""


def test_agi_result_hangup_and_errors() -> None:
    assert parse_agi_result("200%20result%3D-1%0A").value == -1
    timeout = parse_agi_result("200%20result%3D%20(timeout)%0A")
    assert timeout.result == "" and timeout.data == "(timeout)" and timeout.value is None
    bad = parse_agi_result("510%20Invalid%20or%20unknown%20command%0A")
    assert bad.code == 510 and not bad.ok and bad.result is None
    assert parse_agi_result("200%20result%3D1%20a+b%0A").data == "a+b"  # '+' is literal


# -- property: reads can be cut anywhere ----------------------------------------------------------
def _stream(name: str) -> bytes:
    return b"".join(recv_frames(name))


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name.split(".")[0])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_arbitrary_read_boundaries_give_the_same_messages(path: Path, data: st.DataObject) -> None:
    stream = _stream(path.name)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=60))
    whole = AmiParser().feed(stream)
    pieces, _ = feed_in_pieces(stream, cuts)
    assert [as_tuple(m) for m in pieces] == [as_tuple(m) for m in whole]


_UTF8_STREAM = (
    b"Asterisk Call Manager/11.0.0\r\n"
    + "Event: Newchannel\r\nCallerIDName: Jürgen Ñandú 李\r\nUniqueid: 9.1\r\n\r\n".encode()
    + b"".join(recv_frames("ivr_abandon.ami.txt")[1:6])
    + "Event: NewCallerid\r\nCallerIDName: Ивáнова\r\nUniqueid: 9.1\r\n\r\n".encode()
)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(_UTF8_STREAM)), max_size=40))
def test_utf8_stream_any_cuts(cuts: list[int]) -> None:
    whole = AmiParser().feed(_UTF8_STREAM)
    pieces, parser = feed_in_pieces(_UTF8_STREAM, cuts)
    assert [as_tuple(m) for m in pieces] == [as_tuple(m) for m in whole]
    assert pieces[1].get("CallerIDName") == "Jürgen Ñandú 李"
    assert pieces[-1].get("CallerIDName") == "Ивáнова"
    assert parser.decode_errors == 0


def test_case_insensitive_get_survives_length_changing_lowercase() -> None:
    # 'İ'.lower() is two characters: index arithmetic on the lowered text would be off.
    (msg,) = AmiParser(expect_banner=False).feed(
        "Event: NewCallerid\r\nCallerIDName: İİİ Öz\r\nCommandId: c-7\r\n\r\n".encode()
    )
    assert msg.get("commandid") == "c-7"
    assert msg.get("COMMANDID") == "c-7"
    assert msg.get("callerIDname") == "İİİ Öz"
    assert msg.get("nothing", "d") == "d"
    (plain,) = AmiParser(expect_banner=False).feed(b"Event: AsyncAGIExec\r\nCommandId: c-8\r\n\r\n")
    assert plain.get("CommandID") == "c-8"  # the AGI action's spelling finds the event's
    assert plain.get("privilege", "none") == "none"


def test_call_key_prefers_linkedid_then_uniqueid_then_dest_ids() -> None:
    msgs = AmiParser().feed(b"".join(recv_frames("whisper_barge.ami.txt")))
    for m in msgs[1:]:
        expected = (
            m.headers.get("Linkedid")
            or m.headers.get("Uniqueid")
            or m.headers.get("DestLinkedid")
            or m.headers.get("DestUniqueid")
            or m.headers.get("SpyerLinkedid")
            or ""
        )
        assert m.call_key() == expected
    agent_connect = next(m for m in msgs if m.event == "AgentConnect")
    assert agent_connect.call_key() == agent_connect["Linkedid"] != agent_connect["DestUniqueid"]
    member = next(m for m in msgs if m.event == "QueueMemberStatus")
    assert member.call_key() == ""
    assert AmiMessage({"Event": "DialBegin", "DestUniqueid": "5.1"}).call_key() == "5.1"
