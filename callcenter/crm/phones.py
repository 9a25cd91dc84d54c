"""Phone numbers to E.164, whatever form the PBX or a CSV file gives them in.

Caller ids arrive as ``+12025550143``, ``12025550143``, ``2025550143``, ``(202) 555-0143``,
``00441632960001`` or ``tel:+1...``; the CRM stores E.164 only, so every lookup normalises with
the same function and a configured default region for numbers without a country code.
Withheld/anonymous caller ids (``anonymous``, ``<unknown>``, empty) normalise to ``None``.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

_WITHHELD = {"", "anonymous", "unknown", "<unknown>", "restricted", "private", "unavailable", "withheld"}
_STRIP = re.compile(r"^(?:tel:|sip:)", re.I)
# Formatting characters people and PBXs put in numbers. Dropping them before libphonenumber
# parses halves its per-character work (it normalises every character through unicodedata).
_FORMATTING = str.maketrans("", "", " -().\t/\u00a0")


class PhoneError(ValueError):
    pass


# Regions of the North American Numbering Plan whose plain ten-digit numbers ``_nanp`` may
# normalise without libphonenumber (country code 1, national prefix 1).
_NANP_REGIONS = frozenset({"US", "CA"})
_NPA_FIRST = frozenset("23456789")


@functools.lru_cache(maxsize=65536)
def to_e164(raw: str | None, default_region: str = "US", *, strict: bool = False) -> str | None:
    """E.164 for ``raw``; ``None`` for a withheld number. Raises PhoneError if it is not a phone
    number. ``strict`` also refuses numbers that parse but cannot exist (CSV import uses it)."""
    if raw is None:
        return None
    text = _STRIP.sub("", raw.strip())
    text = text.split("@", 1)[0]  # sip:+1202...@host
    if text.lower() in _WITHHELD:
        return None
    text = text.translate(_FORMATTING)
    if text.startswith("00"):
        text = "+" + text[2:]
    fast = _nanp(text, default_region)
    if fast is not None:
        return fast
    return _parse(raw, text, default_region, strict)


def _nanp(text: str, default_region: str) -> str | None:
    """libphonenumber's answer for the caller ids a North American PBX sends most, without it
    (~55 us a number): ``NXXNXXXXXX``, ``1NXXNXXXXXX`` and ``+1NXXNXXXXXX`` (N = 2-9) in a NANP
    default region (``+1...`` in any). None: not one of those forms, ask libphonenumber. Each
    is country code 1 and a ten-digit national number whose area code starts with 2-9, which
    libphonenumber formats as ``+1`` and those digits; tests/unit/test_phones.py compares the
    two on generated numbers."""
    n = len(text)
    if n < 10 or n > 12 or not text.isascii():
        return None
    if n == 12:
        national = text[2:] if text.startswith("+1") else ""
    elif n == 11:
        national = text[1:] if text[0] == "1" and default_region.upper() in _NANP_REGIONS else ""
    else:
        national = text if default_region.upper() in _NANP_REGIONS else ""
    if not national or national[0] not in _NPA_FIRST or not national.isdigit():
        return None
    return "+1" + national


def _parse(raw: str, text: str, default_region: str, strict: bool) -> str:
    """libphonenumber: any number, any region."""
    try:
        num = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise PhoneError(f"not a phone number: {raw!r} ({exc})") from None
    if strict and not phonenumbers.is_possible_number(num):
        raise PhoneError(f"not a possible phone number in {default_region.upper()}: {raw!r}")
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    if not re.fullmatch(r"\+[1-9][0-9]{1,14}", e164):
        raise PhoneError(f"not a phone number: {raw!r}")
    return e164


def is_withheld(raw: str | None) -> bool:
    return raw is None or _STRIP.sub("", raw.strip()).lower() in _WITHHELD
