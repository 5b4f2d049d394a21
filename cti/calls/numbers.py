"""Caller-number normalisation to E.164.

The screen pop identifies customers by E.164 number, so every number the PBX presents is
normalised once, here, with the numbering plan of the site. Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What PBXs and carriers put in the caller-ID number when it is withheld or unknown.
WITHHELD = frozenset({"", "<unknown>", "unknown", "anonymous", "private", "restricted", "withheld"})

# Visual separators people and some carriers put into numbers.
_SEPARATORS = str.maketrans("", "", " -.()/")


@dataclass(frozen=True, slots=True)
class NumberingPlan:
    """How national numbers are written where the PBX is.

    ``country_code`` without ``+``; ``national_length`` the digits of a national number
    without trunk prefix; ``international_prefixes`` the dialling prefixes that introduce a
    country code (``00``, ``011``); ``trunk_prefix`` the national trunk prefix (``0`` in
    most of Europe), ``None`` where national numbers carry none.
    """

    country_code: str = "1"
    national_length: int = 10
    international_prefixes: tuple[str, ...] = ("011", "00")
    trunk_prefix: str | None = None


#: The lab's plan (and the dialplan's ``cid-normalize``): 10 digits are a NANP number. No
#: trunk prefix: an 11-digit ``1…`` number such as ``13912345678`` is a foreign national
#: number seen without its country code, and is left as it is.
DEFAULT_PLAN = NumberingPlan()


def normalise(number: str | None, plan: NumberingPlan = DEFAULT_PLAN) -> str | None:
    """``number`` in E.164 (``+15551230001``) where ``plan`` allows, else as presented.

    ``None`` when the number is withheld or unknown. ``+`` numbers keep their digits;
    numbers that are not all digits (a SIP user name) and national numbers of another
    length are returned unchanged, since guessing a country would misidentify a customer.
    """
    if number is None:
        return None
    text = number.strip()
    if text.lower() in WITHHELD:
        return None
    compact = text.translate(_SEPARATORS)
    if compact.startswith("+"):
        digits = compact[1:]
        return compact if digits.isdigit() and digits.isascii() else text
    if not (compact.isdigit() and compact.isascii()):
        return text
    for prefix in sorted(plan.international_prefixes, key=len, reverse=True):
        if prefix and compact.startswith(prefix) and len(compact) > len(prefix):
            return "+" + compact[len(prefix) :]
    trunk = plan.trunk_prefix
    if trunk and compact.startswith(trunk) and len(compact) == len(trunk) + plan.national_length:
        return f"+{plan.country_code}{compact[len(trunk) :]}"
    if len(compact) == plan.national_length:
        return f"+{plan.country_code}{compact}"
    return compact
