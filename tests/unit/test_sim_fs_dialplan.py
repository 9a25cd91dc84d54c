"""The simulator's XML dialplan hunt, as mod_dialplan_xml's parse_exten: break attributes,
anti-actions, ``$1`` captures, ``continue`` (the shipped dialplan's own paths are checked in
test_freeswitch_dialplan.py with this same hunt)."""

from __future__ import annotations

from callcenter.sim.freeswitch import FsDialplan

DOC = """<include><context name="t">
  <extension name="global" continue="true">
    <condition field="${debug}" expression="^true$" break="never">
      <action application="info"/>
      <anti-action application="log" data="quiet"/>
    </condition>
  </extension>
  <extension name="q">
    <condition field="destination_number" expression="^q_(\\w+)$">
      <action application="set" data="a=1"/>
    </condition>
    <condition field="${flag}" expression="^1$" break="never">
      <action application="set" data="flagged=yes"/>
    </condition>
    <condition field="destination_number" expression="^q_(\\w+)$">
      <action application="go" data="$1"/>
    </condition>
  </extension>
  <extension name="both">
    <condition field="destination_number" expression="^b$"/>
    <condition field="${who}" expression="^x$">
      <action application="hangup"/>
    </condition>
  </extension>
  <extension name="b-default">
    <condition field="destination_number" expression="^b$">
      <action application="park"/>
    </condition>
  </extension>
</context></include>"""


def hunt(dest: str, **variables: str) -> list[tuple[str, str]] | None:
    values = {"destination_number": dest, **{f"${{{k}}}": v for k, v in variables.items()}}
    return FsDialplan([DOC]).hunt("t", lambda f: values.get(f, ""))


def test_break_never_goes_on_with_the_next_condition() -> None:
    assert hunt("q_sales", flag="1") == [("log", "quiet"), ("set", "a=1"), ("set", "flagged=yes"), ("go", "sales")]
    assert hunt("q_sales") == [("log", "quiet"), ("set", "a=1"), ("go", "sales")]
    assert hunt("q_sales", debug="true") == [("info", ""), ("set", "a=1"), ("go", "sales")]


def test_a_failing_condition_with_the_default_break_ends_the_extension() -> None:
    assert hunt("b", who="x") == [("log", "quiet"), ("hangup", "")]
    assert hunt("b", who="y") == [("log", "quiet"), ("park", "")]
