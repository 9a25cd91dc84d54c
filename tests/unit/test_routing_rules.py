"""The rules file: shapes, cross-references, positions of every error, version, schema."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from callcenter.routing.loader import load_rules, load_rules_checked, parse_rules, parse_rules_checked, reload_rules
from callcenter.routing.rules import RuleSet, json_schema_text
from callcenter.yamlconf import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "routing.example.yaml"
SCHEMA = ROOT / "config" / "routing.schema.json"
QUEUES_CONF = ROOT / "dialplans" / "asterisk" / "queues.conf.sample"

BASE = """\
timezone: Europe/Berlin
queues:
  support: {}
  junior:
    forbidden_tiers: [vip]
fallback:
  queue: support
"""


def errors(text: str, name: str = "r.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_rules(textwrap.dedent(text), name)
    assert info.value.problems, "every rules error carries its problems"
    lines = [str(p) for p in info.value.problems]
    if str(info.value).startswith("invalid routing rules:"):
        assert str(info.value) == "invalid routing rules:\n  " + "\n  ".join(lines)
    else:  # YAML syntax errors and a non-mapping file: the one problem is the message
        assert [str(info.value)] == lines
    return lines


def test_minimal_file_is_valid_and_versioned() -> None:
    rs = parse_rules(BASE, "r.yaml")
    assert list(rs.queues) == ["support", "junior"]
    assert rs.fallback.id == "fallback"
    assert re.fullmatch(r"[0-9a-f]{12}", rs.version)


def test_example_file_is_valid_without_warnings() -> None:
    rs, warns = load_rules_checked(EXAMPLE)
    assert warns == []
    assert rs.version.startswith("2025-06-a@")
    assert {"sales", "support", "vip", "junior", "billing"} <= set(rs.queues)
    assert rs.queues["junior"].forbidden_tiers == ("vip",)
    assert rs.queues["vip"].allowed_tiers == ("vip",)
    assert [n.id for n in rs.ivr["main"].nodes] == ["main-menu", "support-menu"]
    assert rs.rules[0].id == "vip-direct" and rs.rules[0].then.priority == 10
    assert rs.calendars["office"].timezone == "Europe/Berlin"  # inherited from the file


def test_example_queue_names_match_the_asterisk_sample() -> None:
    sample = set(re.findall(r"^\[([a-z][a-z0-9_-]*)\]\(cc-template\)", QUEUES_CONF.read_text(), re.M))
    rs = load_rules(EXAMPLE)
    assert sample == set(rs.queues)  # every queue the example rules route to exists in the sample
    for name in sample:
        assert name in rs.queues
        assert rs.queues[name].pbx_name(name, "asterisk-1", "asterisk") == name
    # [cc-queue] only accepts _[a-z]. (lower-case first letter, two characters at least)
    for name, q in rs.queues.items():
        assert re.fullmatch(r"[a-z][^\s]+", q.pbx_name(name, None, "asterisk")), name


def test_version_ignores_comments_and_layout_but_not_content() -> None:
    a = parse_rules(BASE, "a.yaml").version
    b = parse_rules("# a comment\n" + BASE.replace("support: {}", "support:   {}  # note"), "b.yaml").version
    assert a == b
    c = parse_rules(BASE.replace("[vip]", "[vip, gold]"), "c.yaml").version
    assert c != a
    labelled = parse_rules('version: "2025-06-b"\n' + BASE, "d.yaml").version
    assert labelled == f"2025-06-b@{a}"


def test_yaml_syntax_error_has_line_and_column() -> None:
    assert errors("queues:\n  sales: {a: 1\nfallback: x\n") == [
        "r.yaml:3:9: YAML syntax error: expected ',' or '}', but got ':'"
    ]


def test_type_error_points_at_the_field() -> None:
    text = BASE + textwrap.dedent(
        """\
        rules:
          - id: vip-direct
            when: {tier: vip}
            then:
              queue: support
              priority: high
        """
    )
    assert errors(text) == [
        "r.yaml:13:7: rules[0].then.priority: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_unknown_key_suggests_the_right_one() -> None:
    text = BASE + "rules:\n  - id: r1\n    then:\n      queue: support\n      prority: 5\n"
    [line] = errors(text)
    assert line.startswith("r.yaml:12:7: rules[0].then.prority: unknown key 'prority' (did you mean 'priority'?)")
    assert "allowed here: queue, priority, ivr" in line


def test_missing_fallback_and_queues() -> None:
    lines = errors("timezone: UTC\n")
    assert lines == [
        "r.yaml:1:1: queues: required key 'queues' is missing",
        "r.yaml:1:1: fallback: required key 'fallback' is missing",
    ]


def test_not_a_mapping() -> None:
    assert errors("- a\n- b\n") == [
        "r.yaml:1:1: the rules file must be a mapping (queues:, rules:, fallback:, ...)"
    ]


def test_unknown_queue_in_a_rule_points_at_its_queue_line() -> None:
    text = BASE + textwrap.dedent(
        """\
        rules:
          - id: ok
            then: {queue: support}
          - id: typo
            when: {tier: gold}
            then:
              announcement: cc/hello
              queue: suport
        """
    )
    assert errors(text) == [
        "r.yaml:15:7: rules[1].then.queue: unknown queue 'suport' (defined: support, junior)"
    ]


def test_ivr_references_with_numeric_digit_keys_point_at_the_option() -> None:
    text = BASE.replace("fallback:", "fallback_placeholder:") + textwrap.dedent(
        """\
        ivr:
          main:
            nodes:
              - id: main-menu
                prompt: cc/main
                options:
                  1: {queue: support}
                  2: {node: nowhere}
                  3: {queue: billing}
                on_failure: {queue: support}
        """
    )
    text = text.replace("fallback_placeholder:", "fallback:")
    assert errors(text) == [
        "r.yaml:15:15: ivr.main.nodes[0].options.2.node: unknown node 'nowhere' in menu 'main'",
        "r.yaml:16:15: ivr.main.nodes[0].options.3.queue: unknown queue 'billing' (defined: support, junior)",
    ]


def test_node_ids_unique_across_menus_and_targets_stay_in_their_menu() -> None:
    text = BASE + textwrap.dedent(
        """\
        ivr:
          a:
            nodes:
              - id: top
                prompt: cc/a
                options: {"1": {node: sub}}
                on_failure: {hangup: true}
          b:
            nodes:
              - id: sub
                prompt: cc/b
                on_failure: {queue: support}
              - id: top
                prompt: cc/b2
                on_failure: {queue: support}
        """
    )
    assert errors(text) == [
        "r.yaml:13:25: ivr.a.nodes[0].options.1.node: unknown node 'sub' in menu 'a' "
        "(it is in menu 'b'; targets stay within a menu)",
        "r.yaml:20:9: ivr.b.nodes[1].id: node id 'top' is already used (node ids are unique in the file)",
    ]


def test_ivr_loop_without_exit_is_refused() -> None:
    text = BASE + textwrap.dedent(
        """\
        ivr:
          main:
            nodes:
              - id: a
                prompt: cc/a
                options: {"1": {node: b}}
                on_failure: {node: b}
              - id: b
                prompt: cc/b
                options: {"1": {node: a}}
                on_failure: {node: a}
              - id: c
                prompt: cc/c
                options: {"1": {node: a}}
                on_failure: {queue: support}
        """
    )
    lines = errors(text)
    assert lines == [
        "r.yaml:14:9: ivr.main.nodes[0].on_failure: node 'a' never leads out of menu 'main': every path loops "
        "between nodes; route an option or on_failure to a queue, callback, voicemail or hangup",
        "r.yaml:18:9: ivr.main.nodes[1].on_failure: node 'b' never leads out of menu 'main': every path loops "
        "between nodes; route an option or on_failure to a queue, callback, voicemail or hangup",
    ]


def test_option_longer_than_max_digits() -> None:
    text = BASE + textwrap.dedent(
        """\
        ivr:
          main:
            nodes:
              - id: a
                prompt: cc/a
                options: {"12": {queue: support}}
                on_failure: {hangup: true}
        """
    )
    assert errors(text) == ["r.yaml:13:19: ivr.main.nodes[0].options.12: option '12' is longer than max_digits (1)"]


def test_a_rule_that_only_matches_a_tier_its_queue_forbids_is_refused() -> None:
    text = BASE + textwrap.dedent(
        """\
        rules:
          - id: vip-to-juniors
            when: {tier: [VIP]}
            then:
              queue: junior
        """
    )
    assert errors(text) == [
        "r.yaml:12:7: rules[0].then.queue: queue 'junior' refuses tier(s) vip, the only callers this rule "
        "matches: the rule could never route anyone"
    ]
    # a rule that *can* match other tiers is fine: decide() skips it for VIPs only
    parse_rules(text.replace("[VIP]", "[vip, standard]"), "r.yaml")


def test_unknown_callers_rule_into_a_tier_only_queue_is_refused() -> None:
    text = BASE.replace("  junior:\n", "  vip:\n    allowed_tiers: vip\n  junior:\n") + textwrap.dedent(
        """\
        rules:
          - id: strangers
            when: {known: false}
            then: {queue: vip}
        """
    )
    [line] = errors(text)
    assert line.startswith("r.yaml:13:12: rules[0].then.queue: queue 'vip' refuses unknown callers")


def test_fallback_must_reach_a_queue_admitting_every_tier() -> None:
    text = BASE.replace("fallback:\n  queue: support\n", "fallback:\n  queue: junior\n")
    assert errors(text) == [
        "r.yaml:6:1: fallback: the fallback must reach a queue that admits every tier (no allowed_tiers/"
        "forbidden_tiers): it routes callers whose rule was skipped for their tier and callers whose CRM "
        "lookup failed; add one to 'alternatives'"
    ]
    parse_rules(text + "  alternatives: [support]\n", "r.yaml")
    ivr_only = BASE.replace("fallback:\n  queue: support\n", "fallback:\n  hangup: true\n")
    [line] = errors(ivr_only)
    assert line.startswith("r.yaml:6:1: fallback: the fallback must name a queue that admits every tier")


def test_action_shape_errors() -> None:
    text = BASE + "rules:\n  - id: r\n    then: {queue: support, ivr: main}\n"
    assert errors(text) == [
        "r.yaml:10:5: rules[0].then: an action needs exactly one of queue, ivr, voicemail, callback, "
        "hangup: true (got queue, ivr)"
    ]
    text = BASE + "rules:\n  - id: r\n    then: {hangup: true, sticky_agent_s: 10}\n"
    assert errors(text) == [
        "r.yaml:10:5: rules[0].then: sticky_agent_s only applies with queue: the assigned agent rings before "
        "that queue"
    ]


def test_references_to_menus_calendars_groups() -> None:
    text = BASE.replace("  support: {}\n", "  support:\n    overflow:\n      - {id: s1, add_group: helpers, "
                        "add_above: 2, remove_below: 1}\n") + textwrap.dedent(
        """\
        rules:
          - id: r
            when: {calendar_open: office}
            then:
              ivr: main
              closed: {calendar: office, hangup: true}
        """
    )
    assert errors(text) == [
        "r.yaml:5:18: queues.support.overflow[0].add_group: unknown group 'helpers' (defined: none defined)",
        "r.yaml:12:12: rules[0].when.calendar_open: unknown calendar 'office' (defined: none defined)",
        "r.yaml:14:7: rules[0].then.ivr: unknown IVR menu 'main' (defined: none defined)",
        "r.yaml:15:16: rules[0].then.closed.calendar: unknown calendar 'office' (defined: none defined)",
    ]


def test_overflow_step_checks() -> None:
    text = textwrap.dedent(
        """\
        queues:
          support:
            max_wait_s: 300
            overflow:
              - {id: a, after_wait_s: 300, move_to: sales}
              - {id: b, no_agents_available: true, move_to: support}
              - {id: c, add_group: g, add_above: 1, remove_below: 2}
              - {id: d, move_to: sales}
          sales: {}
        groups:
          g: {members: [{interface: PJSIP/1010}]}
        fallback: {queue: support}
        """
    )
    # shape errors come first: the cross-checks only run on a well-formed file
    assert errors(text) == [
        "r.yaml:7:9: queues.support.overflow[2]: remove_below (2.0) must be below add_above (1.0), or the group "
        "would be added and removed on the same load",
        "r.yaml:8:9: queues.support.overflow[3]: a move_to step needs a trigger: after_wait_s, "
        "estimated_wait_s_over, no_agents_logged_in or no_agents_available",
    ]
    fixed = text.replace("add_above: 1, remove_below: 2", "add_above: 2, remove_below: 1").replace(
        "{id: d, move_to: sales}", "{id: d, estimated_wait_s_over: 60, move_to: sales}"
    )
    assert errors(fixed) == [
        "r.yaml:5:17: queues.support.overflow[0].after_wait_s: after_wait_s 300 is not below the queue's "
        "max_wait_s 300: the PBX times the call out first",
        "r.yaml:6:44: queues.support.overflow[1].move_to: a queue cannot overflow into itself",
    ]


def test_ids_are_unique_across_rules_steps_and_fallback() -> None:
    text = BASE.replace("  support: {}\n", "  support:\n    overflow: [{id: dup, after_wait_s: 5, move_to: junior}]\n")
    text += "rules:\n  - {id: dup, then: {queue: support}}\n  - {id: fallback, then: {queue: support}}\n"
    assert errors(text) == [
        "r.yaml:10:6: rules[0].id: id 'dup' is already used by another rule, overflow step or the fallback",
        "r.yaml:11:6: rules[1].id: id 'fallback' is already used by another rule, overflow step or the fallback",
    ]


def test_field_level_checks_timezone_template_regex_hours_names() -> None:
    text = textwrap.dedent(
        """\
        timezone: Mars/Olympus
        calendars:
          office:
            hours:
              mon: ["09:00-13:00", "12:00-18:00"]
              tue: "22:00-06:00"
              wed: "9-5"
              funday: "09:00-10:00"
        queues:
          bad name: {}
          support: {}
        rules:
          - id: r
            when: {did_pattern: "+49("}
            then: {queue: support, display_name: "VIP {name.__class__}"}
          - id: r2
            then: {queue: support, display_name: "{name_short:>10}"}
        fallback: {queue: support}
        """
    )
    lines = errors(text)
    assert lines == [
        "r.yaml:1:1: timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Berlin)",
        "r.yaml:5:7: calendars.office.hours.mon: opening hours 09:00-13:00 and 12:00-18:00 overlap",
        "r.yaml:6:7: calendars.office.hours.tue: 22:00-06:00 wraps past midnight: split it at 24:00 across two days",
        "r.yaml:7:7: calendars.office.hours.wed[0]: expected a time range HH:MM-HH:MM such as 09:00-18:00, got '9-5'",
        "r.yaml:8:7: calendars.office.hours.funday: invalid key: Input should be 'mon', 'tue', 'wed', 'thu', 'fri', "
        "'sat' or 'sun'",
        "r.yaml:10:3: queues.bad name: invalid key: 'bad name' is not a name of letters, digits, '_', '.', '-' "
        "(starting with a letter or digit)",
        "r.yaml:14:12: rules[0].when.did_pattern: invalid regular expression '+49(': nothing to repeat at position 0",
        "r.yaml:15:28: rules[0].then.display_name: unknown placeholder {name.__class__} in 'VIP {name.__class__}'; "
        "known: {name}, {name_short}, {tier}, {segment}, {caller}",
        "r.yaml:17:28: rules[1].then.display_name: unknown placeholder {name_short:>10} in '{name_short:>10}'; "
        "known: {name}, {name_short}, {tier}, {segment}, {caller}",
    ]


def test_every_problem_is_reported_sorted_by_line() -> None:
    text = BASE + textwrap.dedent(
        """\
        rules:
          - id: a
            then: {queue: nope}
          - id: b
            when: {calendar_closed: nope}
            then: {callback: nope2}
        """
    )
    lines = errors(text)
    assert [int(x.split(":")[1]) for x in lines] == [10, 12, 13]


def test_load_rules_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_rules(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path)
    f = tmp_path / "r.yaml"
    f.write_text(BASE.replace("queue: support", "queue: nope"))
    with pytest.raises(ConfigError) as info:
        load_rules(f)
    assert str(info.value.problems[0]).startswith(f"{f}:7:3: fallback.queue: unknown queue 'nope'")


def test_reload_refuses_an_invalid_file_and_keeps_the_rules(tmp_path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(BASE)
    current, problems, changed = reload_rules(f, None)
    assert current is not None and changed and problems == []
    f.write_text(BASE + "rules: [{id: x, then: {queue: nope}}]\n")
    kept, problems, changed = reload_rules(f, current)
    assert kept is current and not changed
    assert [str(p) for p in problems] == [
        f"{f}:8:24: rules[0].then.queue: unknown queue 'nope' (defined: support, junior)"
    ]
    f.write_text("# only a comment changed\n" + BASE)
    same, problems, changed = reload_rules(f, current)
    assert same is current and not changed and problems == []
    f.write_text(BASE.replace("[vip]", "[vip, gold]"))
    new, problems, changed = reload_rules(f, current)
    assert changed and new is not current and new is not None and new.version != current.version


def test_warnings_for_legal_but_dead_parts() -> None:
    text = BASE + textwrap.dedent(
        """\
        calendars:
          office: {hours: {mon: "09:00-17:00"}}
        groups:
          idle: {members: [{interface: PJSIP/1010}]}
        ivr:
          unused:
            nodes:
              - {id: a, prompt: cc/a, on_failure: {hangup: true}}
              - {id: orphan, prompt: cc/b, on_failure: {hangup: true}}
        rules:
          - id: everyone
            then: {queue: support}
          - id: never
            when: {tier: gold}
            then: {queue: junior}
        """
    )
    _rs, warns = parse_rules_checked(text, "r.yaml")
    assert [str(w) for w in warns] == [
        "r.yaml:13:3: ivr.unused: menu 'unused' is not used by any rule or the fallback",
        "r.yaml:16:10: ivr.unused.nodes[1].id: node 'orphan' cannot be reached from the menu start",
        "r.yaml:11:3: groups.idle: group 'idle' is not added by any overflow step",
        "r.yaml:9:3: calendars.office: calendar 'office' is not used",
        "r.yaml:20:5: rules[1].id: rule 'never' is never reached: rule 'everyone' matches every call",
    ]


def test_a_catch_all_rule_into_a_restricted_queue_does_not_shadow_later_rules() -> None:
    # VIPs are skipped past 'juniors-first', so 'vips' is reachable: no warning.
    text = BASE + "rules:\n  - {id: juniors-first, then: {queue: junior}}\n  - {id: vips, then: {queue: support}}\n"
    _rs, warns = parse_rules_checked(text, "r.yaml")
    assert warns == []


def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA.read_text() == json_schema_text(), "regenerate: callcenter rules schema > config/routing.schema.json"
    schema = json.loads(SCHEMA.read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"queues", "fallback"}
    assert "version" in schema["properties"]


def test_ruleset_models_are_frozen() -> None:
    rs = parse_rules(BASE, "r.yaml")
    with pytest.raises(ValueError):
        rs.timezone = "UTC"  # type: ignore[misc]
    assert isinstance(rs, RuleSet)
