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
