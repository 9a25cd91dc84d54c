"""FreeswitchTranslator.resync (pure): what a reconnect snapshot closes, adopts and protects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from callcenter.pbx.freeswitch.message import EslEvent
from callcenter.pbx.freeswitch.translate import FreeswitchTranslator, parse_table

T0 = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
A, B, C = (f"{n}0000000-0000-4000-8000-000000000000" for n in "abc")


def create(uuid: str) -> EslEvent:
    return EslEvent({"Event-Name": "CHANNEL_CREATE", "Unique-ID": uuid, "Call-Direction": "inbound",
                     "Caller-Caller-ID-Number": "2125550123", "Caller-Destination-Number": "5550100",
                     "Caller-Context": "callcenter_inbound"})


def channels(*rows: dict[str, str]) -> str:
    # FreeSWITCH's idle reply is {"row_count": 0} (with a space, no rows: api_replies)
    return json.dumps({"row_count": len(rows), "rows": list(rows)}) if rows else '{"row_count": 0}'


def test_calls_gone_while_away_end_and_new_ones_are_adopted() -> None:
    t = FreeswitchTranslator("fs")
    t.feed(create(A), T0)
    t.feed(create(B), T0 + timedelta(seconds=5))  # seen after the snapshot was requested
    row = {"uuid": C, "direction": "inbound", "initial_cid_num": "2125550199", "initial_dest": "5550199",
           "initial_context": "callcenter_inbound", "callstate": "ACTIVE", "application": "park"}
    out = t.resync(channels(row), at=T0 + timedelta(seconds=6), snapshot_at=T0 + timedelta(seconds=1))
    got = [(e.type, e.call_id) for e in out]
    assert got == [("call_ended", A), ("call_arrived", C), ("call_answered", C), ("controller_attached", C)]
    assert out[0].to_dict()["hung_up_by"] == "unknown" and out[0].to_dict()["cause"] is None
    assert out[1].to_dict()["did"] == "5550199"
    assert sorted(t.live_calls()) == sorted([B, C]) and t.is_controlled(C)


def test_a_destroyed_channel_is_not_revived_by_an_older_snapshot() -> None:
    t = FreeswitchTranslator("fs")
    t.feed(create(A), T0)
    t.feed(EslEvent({"Event-Name": "CHANNEL_DESTROY", "Unique-ID": A}), T0)
    assert t.resync(channels({"uuid": A, "direction": "inbound"}), at=T0) == []
    assert t.resync(channels(), at=T0) == []


def test_outbound_rows_are_not_calls_and_members_rejoin() -> None:
    t = FreeswitchTranslator("fs")
    t.feed(create(A), T0)
    members = ("queue|instance_id|uuid|session_uuid|cid_number|cid_name|system_epoch|joined_epoch|rejoined_epoch|"
               "bridge_epoch|abandoned_epoch|base_score|skill_score|serving_agent|serving_system|state|score\n"
               f"sales@default|single_box|m-1|{A}|2125550123|Caller|1|2|0|0|0|2|0|||Waiting|3\n+OK\n")
    agents = ("name|instance_id|uuid|type|contact|status|state\n"
              "1001|single_box||callback|[leg_timeout=15]user/1001|On Break|Waiting\n+OK\n")
    out = t.resync(channels({"uuid": A, "direction": "inbound"}, {"uuid": B, "direction": "outbound"}),
                   at=T0, members=[members, "+OK\n"], agents=agents)
    assert [(e.type, e.call_id) for e in out] == [
        ("queue_joined", A), ("agent_pause_changed", None), ("agent_status_changed", None)
    ]
    assert t.queue_of(A) == "sales@default" and t.live_calls() == [A]


def test_parse_table_without_domain_gives_no_rows() -> None:
    # callcenter_config queue list members sales -> just +OK (the name needs @default)
    assert parse_table("+OK\n") == []
    assert parse_table("a|b\n1|2\n+OK\n") == [{"a": "1", "b": "2"}]


def test_a_node_set_by_uuid_setvar_shows_on_the_caller_legs_next_handled_event_only() -> None:
    # uuid_setvar emits nothing; the next event of the caller leg carries variable_CC_NODE. Agent
    # legs and events dropped by name are not read for it.
    t = FreeswitchTranslator("fs")
    t.feed(create(A), T0)
    agent = EslEvent.from_json(json.dumps({
        "Event-Name": "CHANNEL_CREATE", "Unique-ID": B, "Call-Direction": "outbound",
        "variable_cc_member_session_uuid": A, "variable_cc_agent": "1001", "variable_CC_NODE": "agent-node",
    }))
    assert t.feed(agent, T0) == [] and t.call_of_channel(B) == A
    state = EslEvent.from_json(json.dumps({"Event-Name": "CHANNEL_STATE", "Unique-ID": A, "variable_CC_NODE": "x"}))
    assert t.feed(state, T0) == [] and not t.unknown
    answer = f"Event-Name: CHANNEL_ANSWER\nUnique-ID: {A}\nAnswer-State: answered\nvariable_CC_NODE: menu%201\n\n"
    out = t.feed(EslEvent.from_plain(answer), T0 + timedelta(seconds=1))
    got = [(e.type, getattr(e, "node", None)) for e in out]
    assert got == [("ivr_node_entered", "menu 1"), ("call_answered", None)]
    hangup = EslEvent({"Event-Name": "CHANNEL_HANGUP", "Unique-ID": B, "Hangup-Cause": "NORMAL_CLEARING",
                       "variable_CC_NODE": "agent-node-2"})
    assert "ivr_node_entered" not in [e.type for e in t.feed(hangup, T0 + timedelta(seconds=2))]
    again = EslEvent({"Event-Name": "CHANNEL_EXECUTE", "Unique-ID": A, "Application": "sleep",
                      "variable_CC_NODE": "menu 1"})
    assert [e.type for e in t.feed(again, T0 + timedelta(seconds=3))] == []  # unchanged: no repeat


# api_replies: callcenter_config tier list
TIERS = ("queue|agent|state|level|position\nsales@default|1001|Ready|1|1\nsupport@default|1001|Ready|1|1\n"
         "sales@default|1002|Ready|1|2\n+OK\n")


def test_tiers_are_announced_as_queue_memberships_and_reconciled() -> None:
    t = FreeswitchTranslator("fs")
    out = t.resync(channels(), at=T0, tiers=TIERS)
    assert sorted((e.agent, e.queue, e.added, e.penalty) for e in out) == [
        ("1001", "sales@default", True, 1), ("1001", "support@default", True, 1), ("1002", "sales@default", True, 1)]
    assert t.resync(channels(), at=T0, tiers=TIERS) == []  # nothing changed
    assert t.resync(channels(), at=T0) == []  # not asked: memberships stay as they are
    # the controller's own tier add (mod_callcenter fires no event for it), then a resync
    # without 1002's tier: one added, one removed
    (added,) = t.tier_changed("1003", "support@default", True, T0, level=0)
    assert (added.type, added.agent, added.added, added.penalty) == ("queue_member_changed", "1003", True, 0)
    assert t.tier_changed("1003", "support@default", True, T0) == []  # once
    fewer = TIERS.replace("sales@default|1002|Ready|1|2\n", "").replace("+OK", "support@default|1003|Ready|0|1\n+OK")
    (removed,) = t.resync(channels(), at=T0, tiers=fewer)
    assert (removed.agent, removed.queue, removed.added) == ("1002", "sales@default", False)


def test_control_applications_are_journey_steps_only_when_they_fail() -> None:
    t = FreeswitchTranslator("fs")
    row = {"uuid": C, "direction": "inbound", "initial_cid_num": "2125550199", "initial_dest": "5550199",
           "initial_context": "callcenter_inbound", "callstate": "ACTIVE", "application": "park"}
    t.resync(channels(row), at=T0, snapshot_at=T0)
    assert t.is_controlled(C)

    def complete(app: str, response: str = "_none_", answer_state: str = "answered") -> list[str]:
        ev = EslEvent({"Event-Name": "CHANNEL_EXECUTE_COMPLETE", "Unique-ID": C, "Application": app,
                       "Application-Response": response, "Application-UUID": f"{app}-1",
                       "Answer-State": answer_state})
        return [e.type for e in t.feed(ev, T0 + timedelta(seconds=1))]

    assert complete("set") == [] and complete("export") == [] and complete("answer") == []
    assert complete("playback", "FILE PLAYED") == ["prompt_finished"]
    assert complete("set", "-ERR no data") == ["prompt_finished"]
    assert complete("set", answer_state="hangup") == ["prompt_finished"]
