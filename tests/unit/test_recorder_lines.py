"""The recorder's journal lines: the fast per-value encoder writes exactly what the general
JSON encoder wrote, so old and new journal segments read back the same."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum

from hypothesis import given
from hypothesis import strategies as st

from callcenter.storage.recorder import TABLES, _decode_line, _detail_json, _dumps, _encode_line, _item, _jsonable


class Colour(StrEnum):
    RED = "red"


values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=3))])), st.uuids(),
    st.just(Colour.RED), st.lists(st.integers(), max_size=3),
)


@given(st.lists(values, max_size=14))
def test_a_line_is_what_the_general_encoder_writes(row: list[object]) -> None:
    table, kept, line = _item("call_events", tuple(row))
    assert table == "call_events" and kept == tuple(row)
    assert line == _encode_line("call_events", tuple(row)) + "\n"


def test_a_call_events_row_reads_back_from_its_line() -> None:
    at = datetime(2026, 11, 2, 9, 0, 0, 123456, tzinfo=UTC)
    row = ("ast1-1.2", 3, at, at + timedelta(milliseconds=4), "ast1", "routed", None, "support", None,
           '{"name":"Jürgen \\"J\\""}', "v7", "vip-direct")
    assert len(row) == len(TABLES["call_events"])
    _, _, line = _item("call_events", row)
    assert _decode_line(line) == ("call_events", row)


details = st.dictionaries(
    st.one_of(st.text(max_size=8), st.integers(0, 9), st.booleans(), st.none()),
    st.one_of(values, st.dictionaries(st.text(max_size=4), values, max_size=3), st.tuples(values, values)),
    max_size=8,
)


def outcome(f: Callable[[], str]) -> tuple[str, object]:
    try:
        return "ok", f()
    except TypeError:  # not JSON (a UUID): refused either way
        return "refused", None


@given(details)
def test_a_detail_is_written_as_the_general_conversion_writes_it(detail: dict) -> None:  # type: ignore[type-arg]
    assert outcome(lambda: _detail_json(detail)) == outcome(lambda: _dumps(_jsonable(detail)))
