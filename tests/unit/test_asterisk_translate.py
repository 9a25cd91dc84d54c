"""Translator rules for behaviour described in TRACES_README.md whose traces are held aside
(queue_timeout_ringnoanswer, asyncagi_hangup_in_ivr), plus resync and edge rules. Messages are
built with the field names and orderings the README and the captured traces show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callcenter.pbx.asterisk.message import AmiMessage
from callcenter.pbx.asterisk.translate import (
    AsteriskTranslator,
    decode_agi_env,
    device_state,
    spy_mode_from_options,
)

T0 = datetime(2026, 11, 22, 15, 0, 0, tzinfo=UTC)
CALL = "1795361000.0"
CALLER = "PJSIP/pstn-00000000"


class Feeder:
    def __init__(self) -> None:
        self.tr = AsteriskTranslator("pbx-a")
        self.t = T0

    def __call__(self, event: str, after: float = 0.01, **headers: Any) -> list[dict[str, Any]]:
        self.t += timedelta(seconds=after)
        msg = AmiMessage({"Event": event, **{k.replace("_", "-"): str(v) for k, v in headers.items()}})
        return [e.to_dict() for e in self.tr.feed(msg, self.t)]


def snap(channel: str = CALLER, uid: str = CALL, linked: str = CALL, **extra: Any) -> dict[str, Any]:
    base = {
        "Channel": channel,
        "ChannelState": "6",
        "CallerIDNum": "2025550143",
        "CallerIDName": "PSTN 2025550143",
        "Context": "cc-queue",
        "Exten": "support",
        "Uniqueid": uid,
        "Linkedid": linked,
    }
    base.update(extra)
    return base


def member(dest: str, dest_uid: str, iface: str, name: str, queue: str = "support") -> dict[str, Any]:
    return {
        "DestChannel": dest,
        "DestUniqueid": dest_uid,
        "DestLinkedid": CALL,
        "Queue": queue,
        "Interface": iface,
        "MemberName": name,
    }


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def start_call(feed: Feeder, exten: str = "5550100") -> list[dict[str, Any]]:
    out = feed("Newchannel", **snap(ChannelState="4", Context="from-pstn", Exten=exten))
    out += feed("Newstate", **snap(Context="from-pstn", Exten=exten))
    return out


def test_queue_timeout_ringnoanswer_scenario() -> None:
    """1001 rings 15 s: AgentRingNoAnswer RingTime 15000 (ms) then DialEnd NOANSWER *and*
    CANCEL; retry; 1002 rings and is cancelled when the caller leaves (no RNA); ABANDON."""
    feed = Feeder()
    start_call(feed)
    out = feed("QueueCallerJoin", **snap(), Queue="support", Position=1, Count=1)
    feed("Newchannel", **snap("PJSIP/1001-00000001", "1795361001.1", CALL, ChannelState="0"))
    out += feed("AgentCalled", **snap(), **member("PJSIP/1001-00000001", "1795361001.1", "PJSIP/1001", "Alice"))
    out += feed(
        "AgentRingNoAnswer",
        15,
        **snap(),
        **member("PJSIP/1001-00000001", "1795361001.1", "PJSIP/1001", "Alice"),
        RingTime=15000,
    )
    out += feed("DialEnd", **snap(), DestChannel="PJSIP/1001-00000001", DialStatus="NOANSWER")
    out += feed("DialEnd", **snap(), DestChannel="PJSIP/1001-00000001", DialStatus="CANCEL")
    out += feed("Hangup", **snap("PJSIP/1001-00000001", "1795361001.1", CALL), Cause=0, Cause_txt="Unknown")
    feed("Newchannel", 5, **snap("PJSIP/1002-00000002", "1795361021.2", CALL, ChannelState="0"))
    out += feed("AgentCalled", **snap(), **member("PJSIP/1002-00000002", "1795361021.2", "PJSIP/1002", "Bob"))
    out += feed("HangupRequest", **snap())
    out += feed("DialEnd", **snap(), DestChannel="PJSIP/1002-00000002", DialStatus="CANCEL")
    out += feed("QueueCallerAbandon", **snap(), Queue="support", Position=1, OriginalPosition=1, HoldTime=20)
    out += feed("QueueCallerLeave", **snap(), Queue="support", Position=1, Count=0)
    out += feed("SoftHangupRequest", **snap(), Cause=16)
    out += feed("Hangup", **snap(), Cause=0, Cause_txt="Unknown")
    assert types(out) == [
        "queue_joined",
        "agent_offered",
        "agent_ring_no_answer",
        "agent_offered",
        "agent_ring_canceled",
        "queue_left",
        "call_ended",
    ]
    assert out[2]["ring_ms"] == 15000 and out[2]["agent"] == "PJSIP/1001"
    assert out[4]["agent"] == "PJSIP/1002" and out[4]["queue"] == "support"
    assert (out[5]["reason"], out[5]["hold_s"]) == ("abandon", 20)
    assert (out[6]["cause"], out[6]["hung_up_by"]) == (0, "caller")
    assert all(e["call_id"] == CALL for e in out)


def test_asyncagi_hangup_in_ivr_scenario() -> None:
    """Caller hangup during GET DATA: HangupRequest -> AGIExecEnd -> AsyncAGIExec result=-1 ->
    AsyncAGIEnd -> VarSet AGISTATUS=HANGUP -> SoftHangupRequest 16 -> Hangup Cause 0."""
    feed = Feeder()
    out = start_call(feed, exten="5550110")
    ctx = {"Context": "from-pstn", "Exten": "5550110"}
    env = "agi_request%3A%20async%0Aagi_callerid%3A%202025550143%0Aagi_dnid%3A%205550110%0A%0A"
    out += feed("AsyncAGIStart", **snap(**ctx), Env=env)
    feed("AGIExecStart", **snap(**ctx), CommandId="530694933", Command="GET DATA hello-world 10000 1")
    out += feed("HangupRequest", 4, **snap(**ctx))
    feed("AGIExecEnd", **snap(**ctx), CommandId="530694933", ResultCode=200, Result="Success")
    out += feed("AsyncAGIExec", **snap(**ctx), Result="200%20result%3D-1%0A", CommandId="g1")
    out += feed("AsyncAGIEnd", **snap(**ctx))
    out += feed("VarSet", **snap(**ctx), Variable="AGISTATUS", Value="HANGUP")
    out += feed("SoftHangupRequest", **snap(**ctx), Cause=16)
    out += feed("Hangup", **snap(**ctx), Cause=0, Cause_txt="Unknown")
    assert types(out) == [
        "call_arrived",
        "call_answered",
        "controller_attached",
        "digits_collected",
        "controller_released",
        "call_ended",
    ]
    assert out[0]["did"] == "5550110"
    assert out[3] == out[3] | {"digits": "", "hangup": True, "command_id": "g1"}
    assert (out[5]["cause"], out[5]["hung_up_by"]) == (0, "caller")
    # An AGI command to the gone channel gets an Error *response*: responses are no events.
    assert feed.tr.feed(AmiMessage({"Response": "Error", "Message": "Channel does not exist."}), T0) == []


def test_get_data_timeout_without_digits_and_with_partial_digits() -> None:
    feed = Feeder()
    start_call(feed)
    feed("AsyncAGIStart", **snap(), Env="")
    feed("AGIExecStart", **snap(), Command="GET DATA menu 3000 4")
    (none,) = feed("AsyncAGIExec", **snap(), Result="200%20result%3D%20(timeout)%0A", CommandId="a")
    feed("AGIExecStart", **snap(), Command="GET DATA menu 3000 4")
    (some,) = feed("AsyncAGIExec", **snap(), Result="200%20result%3D12%20(timeout)%0A", CommandId="b")
    (bad,) = feed("AsyncAGIExec", **snap(), Result="510%20Invalid%20or%20unknown%20command%0A", CommandId="c")
    assert (none["type"], none["digits"], none["hangup"]) == ("digits_collected", "", False)
    assert (some["digits"], some["command_id"]) == ("12", "b")
    assert (bad["type"], bad["result"]) == ("prompt_finished", "510 Invalid or unknown command")


def test_control_commands_are_journey_steps_only_when_they_fail() -> None:
    feed = Feeder()
    start_call(feed)
    feed("AsyncAGIStart", **snap(), Env="")

    def run(command: str, result: str, cid: str) -> list[dict[str, Any]]:
        feed("AGIExecStart", **snap(), Command=command)
        return feed("AsyncAGIExec", **snap(), Result=result, CommandId=cid)

    assert run("SET VARIABLE CC_QUEUE sales", "200%20result%3D1%0A", "q") == []
    assert run("set variable CALLERID(name) \"VIP\"", "200%20result%3D1%0A", "n") == []
    assert run("ANSWER", "200%20result%3D0%0A", "a") == []
    (played,) = run('STREAM FILE hello-world ""', "200%20result%3D0%20endpos%3D11360%0A", "p")
    assert (played["type"], played["command_id"]) == ("prompt_finished", "p")
    (refused,) = run("SET VARIABLE", "520%20Invalid%20command%20syntax.%0A", "bad")
    assert (refused["type"], refused["result"]) == ("prompt_finished", "520 Invalid command syntax.")
    (cut,) = run("SET VARIABLE CC_PRIO 5", "200%20result%3D-1%0A", "cut")  # cut off
    assert (cut["type"], cut["command_id"]) == ("prompt_finished", "cut")
    (unknown,) = feed("AsyncAGIExec", **snap(), Result="200%20result%3D1%0A", CommandId="x")  # no AGIExecStart
    assert unknown["type"] == "prompt_finished"
    assert run("ASYNCAGI BREAK", "200%20result%3D0%0A", "b") == []
    assert [e["type"] for e in feed("AsyncAGIEnd", **snap())] == ["controller_released"]


def test_cc_node_wins_over_guessed_nodes() -> None:
    feed = Feeder()
    start_call(feed)
    ivr = {"Context": "ivr-main", "Exten": "s"}
    out = feed("Newexten", **snap(**ivr), Application="Set", AppData="CC_NODE=main-menu")
    out += feed("VarSet", **snap(**ivr), Variable="CC_NODE", Value="main-menu")
    out += feed("Newexten", **snap(**ivr), Application="BackGround", AppData="hello-world")
    out += feed("Newexten", **snap(Context="ivr-sub", Exten="s"), Application="Read", AppData="X,beep")
    out += feed("VarSet", **snap(Context="ivr-sub", Exten="s"), Variable="__CC_NODE", Value="sub-menu")
    assert [(e["type"], e["node"]) for e in out] == [
        ("ivr_node_entered", "main-menu"),
        ("ivr_node_entered", "sub-menu"),
    ]


def test_guessed_nodes_reenter_and_stop_in_queue_and_hangup() -> None:
    feed = Feeder()
    start_call(feed)
    s, t = {"Context": "ivr-main", "Exten": "s"}, {"Context": "ivr-main", "Exten": "t"}
    out = feed("Newexten", **snap(**s), Application="BackGround", AppData="hello-world")
    out += feed("Newexten", **snap(**s), Application="WaitExten", AppData="5")
    out += feed("Newexten", 5, **snap(**t), Application="Goto", AppData="ivr-main,s,1")
    out += feed("Newexten", **snap(**s), Application="BackGround", AppData="hello-world")  # retry: re-entry
    out += feed("QueueCallerJoin", **snap(), Queue="support", Position=1, Count=1)
    out += feed("Newexten", **snap(Context="x", Exten="s"), Application="Playback", AppData="no")  # redirect
    out += feed("QueueCallerLeave", **snap(), Queue="support", Position=1, Count=0)
    out += feed("HangupRequest", **snap(Context="x", Exten="s"))
    out += feed("Newexten", **snap(Context="cc-hangup", Exten="s"), Application="Playback", AppData="bye")
    assert [(e["type"], e.get("node")) for e in out] == [
        ("ivr_node_entered", "ivr-main,s"),
        ("ivr_node_entered", "ivr-main,s"),
        ("queue_joined", None),
        ("queue_left", None),
    ]
    assert out[-1]["reason"] == "timeout"  # left without answer/abandon/key: Queue() gave up


def test_exit_key_reason() -> None:
    feed = Feeder()
    start_call(feed)
    feed("QueueCallerJoin", **snap(), Queue="support", Position=1, Count=1)
    feed("DTMFEnd", 30, **snap(), Digit="0", DurationMs=160, Direction="Received")
    (left,) = feed("QueueCallerLeave", 0.2, **snap(), Queue="support", Position=1, Count=0)
    assert left["reason"] == "exit_key"
    # Digits relayed through a bridge appear again as Direction: Sent on the other leg.
    assert feed("DTMFEnd", **snap(), Digit="5", Direction="Sent") == []


def test_controller_hangup_is_system_and_agent_transfer() -> None:
    feed = Feeder()
    start_call(feed)
    feed("SoftHangupRequest", **snap(), Cause=16)  # AMI Hangup: no HangupRequest first
    (ended,) = feed("Hangup", **snap(), Cause=16, Cause_txt="Normal Clearing")
    assert ended["hung_up_by"] == "system"

    feed = Feeder()
    start_call(feed)
    feed("QueueCallerJoin", **snap(), Queue="support", Position=1, Count=1)
    feed("Newchannel", **snap("PJSIP/1001-00000001", "1795361001.1", CALL, ChannelState="0"))
    feed("AgentCalled", **snap(), **member("PJSIP/1001-00000001", "1795361001.1", "PJSIP/1001", "Alice"))
    feed("DialEnd", **snap(), DestChannel="PJSIP/1001-00000001", DialStatus="ANSWER")
    feed("QueueCallerLeave", **snap(), Queue="support", Position=1, Count=0)
    feed(
        "AgentConnect",
        **snap(),
        **member("PJSIP/1001-00000001", "1795361001.1", "PJSIP/1001", "Alice"),
        HoldTime=1,
        RingTime=1,
    )
    (done,) = feed(
        "AgentComplete",
        **snap(),
        **member("PJSIP/1001-00000001", "1795361001.1", "PJSIP/1001", "Alice"),
        HoldTime=1,
        TalkTime=9,
        Reason="transfer",
    )
    assert done["ended_by"] == "agent"
    # The caller goes on in the dialplan (e.g. a survey) and hangs up there.
    feed("Newexten", **snap(Context="survey", Exten="s"), Application="Read", AppData="R,rate")
    feed("HangupRequest", **snap(Context="survey", Exten="s"))
    (ended,) = feed("Hangup", **snap(Context="survey", Exten="s"), Cause=0, Cause_txt="Unknown")
    assert ended["hung_up_by"] == "caller"


def test_spy_mode_from_variable_when_chanspy_appdata_missing() -> None:
    feed = Feeder()
    feed("Newchannel", **snap("PJSIP/1009-00000005", "1795361100.5", "1795361100.5", ChannelState="0"))
    feed(
        "VarSet", **snap("PJSIP/1009-00000005", "1795361100.5", "1795361100.5"), Variable="CC_SPY_MODE", Value="listen"
    )
    spy = {
        "SpyerChannel": "PJSIP/1009-00000005",
        "SpyerUniqueid": "1795361100.5",
        "SpyerLinkedid": "1795361100.5",
        "SpyeeChannel": "PJSIP/1001-00000001",
        "SpyeeLinkedid": CALL,
    }
    (started,) = feed("ChanSpyStart", **spy)
    assert (started["call_id"], started["mode"]) == (CALL, "listen")
    # No ChanSpyStop (e.g. lost): the spyer's Hangup still closes it.
    (stopped,) = feed("Hangup", **snap("PJSIP/1009-00000005", "1795361100.5", "1795361100.5"), Cause=16)
    assert (stopped["type"], stopped["mode"]) == ("spy_stopped", "listen")
    # Originated legs are not calls.
    assert feed.tr.live_calls() == []


def test_unknown_events_are_counted_never_fatal() -> None:
    feed = Feeder()
    assert feed("AttendedTransfer", Foo="bar") == []
    assert feed("AttendedTransfer") == []
    assert feed("RTCPSent", Channel=CALLER) == []  # known, deliberately ignored
    assert dict(feed.tr.unknown) == {"AttendedTransfer": 2}
    # Events about channels never seen do not crash either.
    assert feed("Hangup", **snap("PJSIP/ghost-00000009", "1.9", "1.9")) == []
    assert feed("DialEnd", DestChannel="PJSIP/1001-00000009", DialStatus="CANCEL") == []


def test_member_status_and_pause_deduplication() -> None:
    feed = Feeder()
    out = []
    for queue in ("support", "vip", "sales"):
        out += feed("QueueMemberStatus", Queue=queue, Interface="PJSIP/1001", MemberName="Alice", Status=6, Paused=0)
    for queue in ("support", "vip", "sales"):
        out += feed(
            "QueueMemberPause",
            Queue=queue,
            Interface="PJSIP/1001",
            MemberName="Alice",
            Status=6,
            Paused=1,
            PausedReason="lunch",
        )
    out += feed("QueueMemberPause", Queue="sales", Interface="PJSIP/1001", Paused=1, PausedReason="lunch")  # repeat
    assert [(e["type"], e.get("status"), e.get("queue")) for e in out] == [
        ("agent_status_changed", "ringing", None),
        ("agent_pause_changed", None, "support"),
        ("agent_pause_changed", None, "vip"),
        ("agent_pause_changed", None, "sales"),
    ]


def test_resync_closes_vanished_calls_and_adopts_waiting_ones() -> None:
    feed = Feeder()
    start_call(feed)
    feed("QueueCallerJoin", **snap(), Queue="support", Position=1, Count=1)
    feed("QueueMemberStatus", Queue="support", Interface="PJSIP/1001", Status=1)
    # The link drops; meanwhile the call ends and another one reaches AGI(agi:async).
    waiting = "PJSIP/pstn-00000007"
    channels = [
        AmiMessage(
            {
                "Event": "CoreShowChannel",
                **snap(waiting, "1795361200.7", "1795361200.7", Context="from-pstn", Exten="5550111"),
                "Application": "AGI",
                "ApplicationData": "agi:async",
            }
        ),
        AmiMessage(
            {
                "Event": "CoreShowChannel",
                **snap("PJSIP/1009-00000008", "1795361201.8", "1795361201.8"),
                "Application": "ChanSpy",
                "ApplicationData": "PJSIP/1001-,qB",
            }
        ),
        AmiMessage({"Event": "CoreShowChannelsComplete", "ListItems": "2"}),
    ]
    queue_status = [
        AmiMessage({"Event": "QueueParams", "Queue": "support"}),
        AmiMessage(
            {
                "Event": "QueueMember",
                "Queue": "support",
                "Location": "PJSIP/1001",
                "Name": "Alice",
                "Status": "2",
                "Paused": "1",
                "PausedReason": "lunch",
            }
        ),
        AmiMessage({"Event": "QueueEntry", "Queue": "support", "Position": "1", "Channel": waiting}),
    ]
    at = T0 + timedelta(minutes=5)
    out = [e.to_dict() for e in feed.tr.resync(channels, queue_status, at=at)]
    assert [(e["type"], e["call_id"]) for e in out] == [
        ("call_ended", CALL),  # gone while we were away: cause unknown
        ("call_arrived", "1795361200.7"),
        ("call_answered", "1795361200.7"),
        ("controller_attached", "1795361200.7"),  # sits in AGI(agi:async): drive it
        ("agent_status_changed", None),  # 1 -> 2 (in use)
        ("agent_pause_changed", None),
        ("queue_joined", "1795361200.7"),
    ]
    assert (out[0]["cause"], out[0]["hung_up_by"], out[0]["at"]) == (None, "unknown", at.isoformat())
    assert (out[4]["status"], out[5]["paused"], out[5]["reason"]) == ("in_use", True, "lunch")
    assert feed.tr.is_controlled("1795361200.7")
    assert feed.tr.caller_channel("1795361200.7") == waiting
    assert feed.tr.live_calls() == ["1795361200.7"]
    # A second identical snapshot changes nothing.
    assert feed.tr.resync(channels, queue_status, at=at) == []
    # The adopted call's later events flow normally; its end is attributed from facts.
    feed("HangupRequest", **snap(waiting, "1795361200.7", "1795361200.7"))
    (ended,) = feed("Hangup", **snap(waiting, "1795361200.7", "1795361200.7"), Cause=0)
    assert ended["hung_up_by"] == "caller"


def test_helpers() -> None:
    assert spy_mode_from_options("qw") == "whisper"
    assert spy_mode_from_options("qB") == "barge"
    assert spy_mode_from_options("q") == "listen"
    assert spy_mode_from_options("qv(-1)e(1001:1002)") == "listen"  # letters inside () are arguments
    assert device_state("1") == "available" and device_state("8") == "on_hold" and device_state(None) == "unknown"
    env = decode_agi_env("agi_request%3A%20async%0Aagi_accountcode%3A%20%0Aagi_dnid%3A%205550110%0A%0A")
    assert env == {"agi_request": "async", "agi_accountcode": "", "agi_dnid": "5550110"}


def test_resync_races_with_live_events() -> None:
    """Events keep flowing while CoreShowChannels runs: a call that starts after the request
    is not closed by the (older) snapshot, and a channel whose Hangup was already handled is
    not revived by a snapshot that still lists it."""
    feed = Feeder()
    snapshot_at = feed.t
    start_call(feed)  # Newchannel arrives after the request went out; not in the snapshot
    gone = "PJSIP/pstn-00000009"
    feed("Hangup", **snap(gone, "1795361300.9", "1795361300.9"), Cause=16)  # unknown to us, already over
    stale = [AmiMessage({"Event": "CoreShowChannel", **snap(gone, "1795361300.9", "1795361300.9")})]
    assert feed.tr.resync(stale, at=feed.t, snapshot_at=snapshot_at) == []
    assert feed.tr.live_calls() == [CALL]
    # Without the snapshot time the same snapshot would wrongly end the new call.
    (ended,) = feed.tr.resync([], at=feed.t)
    assert (ended.type, ended.call_id) == ("call_ended", CALL)


def test_resync_announces_queue_memberships_once_and_retires_vanished_ones() -> None:
    """Without this, nobody downstream knows who staffs a queue until a member changes state:
    routing's "agents available" and overflow's "no agent logged in" would be wrong."""
    feed = Feeder()
    members = [
        AmiMessage({"Event": "QueueMember", "Queue": q, "Location": iface, "Name": name, "Status": "1",
                    "Paused": "0", "Penalty": "0"})
        for q, iface, name in (("sales", "PJSIP/1001", "Alice"), ("sales", "PJSIP/1002", "Bob"),
                               ("vip", "PJSIP/1001", "Alice"))
    ]
    at = T0 + timedelta(minutes=1)
    first = [e.to_dict() for e in feed.tr.resync([], members, at=at)]
    added = [(e["agent"], e["queue"]) for e in first if e["type"] == "queue_member_changed" and e["added"]]
    assert added == [("PJSIP/1001", "sales"), ("PJSIP/1002", "sales"), ("PJSIP/1001", "vip")]
    again = feed.tr.resync([], members, at=at)
    assert not any(e.type == "queue_member_changed" for e in again)
    # Bob was removed from sales while the link was down
    later = [e.to_dict() for e in feed.tr.resync([], [members[0], members[2]], at=at)]
    assert [(e["agent"], e["queue"], e["added"]) for e in later if e["type"] == "queue_member_changed"] == [
        ("PJSIP/1002", "sales", False)]


def test_callback_user_event_becomes_callback_dialed_and_other_user_events_are_ignored() -> None:
    feed = Feeder()
    (ev,) = feed("UserEvent", Channel="PJSIP/1001-00000009", Uniqueid="1900000000.1", Linkedid="1900000000.1",
                 UserEvent="CcCallback", CallbackId="42", Attempt="2", DialStatus="noanswer")
    assert (ev["type"], ev["callback_id"], ev["attempt"], ev["dial_status"], ev["callback_call_id"], ev["call_id"]) == (
        "callback_dialed", 42, 2, "NOANSWER", "1900000000.1", None)
    assert feed("UserEvent", UserEvent="SomethingOfTheAdmins", CallbackId="1") == []
    assert feed("UserEvent", UserEvent="CcCallback", CallbackId="", Attempt="1") == []  # counted, never fatal
    assert sum(feed.tr.unknown.values()) == 1
