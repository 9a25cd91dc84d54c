"""E.164 normalisation: the NANP shortcut gives exactly libphonenumber's answer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.crm.phones import PhoneError, _nanp, _parse, to_e164

REGIONS = st.sampled_from(["US", "CA", "us", "GB", "DE", "RU", "FR", "IN"])
DIGITS = st.text(alphabet="0123456789", min_size=8, max_size=13)


def libphonenumber(text: str, region: str, strict: bool = False) -> str | None:
    try:
        return _parse(text, text, region, strict)
    except PhoneError:
        return None


@settings(max_examples=3000, deadline=None)
@given(prefix=st.sampled_from(["", "1", "+1", "+", "11", "0", "+7", "+44"]), digits=DIGITS, region=REGIONS)
def test_the_nanp_shortcut_agrees_with_libphonenumber(prefix: str, digits: str, region: str) -> None:
    text = prefix + digits
    fast = _nanp(text, region)
    if fast is not None:  # when it answers, it is libphonenumber's answer
        assert fast == libphonenumber(text, region) == libphonenumber(text, region, strict=True), text


@settings(max_examples=500, deadline=None)
@given(area=st.integers(200, 999), exchange=st.integers(0, 999), line=st.integers(0, 9999),
       form=st.sampled_from(["{a}{e:03d}{l:04d}", "1{a}{e:03d}{l:04d}", "+1{a}{e:03d}{l:04d}",
                             "({a}) {e:03d}-{l:04d}", "+1 {a}-{e:03d}-{l:04d}", "tel:+1{a}{e:03d}{l:04d}",
                             "sip:1{a}{e:03d}{l:04d}@pbx.example"]))
def test_north_american_caller_ids_take_the_shortcut_and_match(area: int, exchange: int, line: int, form: str) -> None:
    raw = form.format(a=area, e=exchange, l=line)
    national = f"{area}{exchange:03d}{line:04d}"
    assert _nanp(national, "US") is not None  # the forms above all reach the shortcut
    assert to_e164(raw, "US") == libphonenumber(national, "US") == "+1" + national


def test_what_the_shortcut_leaves_to_libphonenumber() -> None:
    assert _nanp("0202555014", "US") is None  # area code starting 0/1: not NANP-shaped
    assert _nanp("1202555014", "US") is None
    assert _nanp("2025550143", "GB") is None  # a national number of another region
    assert _nanp("12025550143", "DE") is None
    assert _nanp("+12025550143", "DE") == "+12025550143"  # a country code is region-independent
    assert _nanp("２０２５５５０１４３", "US") is None  # full-width digits: libphonenumber normalises them
    assert to_e164("２０２５５５０１４３", "US") == "+12025550143"
    assert to_e164("+441632960001", "US") == "+441632960001"
    assert to_e164("anonymous", "US") is None
    with pytest.raises(PhoneError):
        to_e164("sip:alice", "US")
