"""Customers' phone numbers as E.164, with the ``phonenumbers`` library (Google's
libphonenumber metadata): the customer tables store every number as E.164 so a caller's
number, normalised the same way, finds them.

The PBX side (``cti.calls.numbers``) only reshapes what the PBX presents; here a number
written by a person (an import, an agent) is checked against the numbering plan of its
country: one with no country code is read as a number of ``region`` (ISO 3166 code, e.g.
``DE``). Withheld and empty numbers are an error here: callers handle "no number" before.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from crm_bridge.errors import NumberError

__all__ = ["NumberError", "check_region", "region_for_country_code", "to_e164"]

_PARSE_PROBLEMS = {
    NumberParseException.INVALID_COUNTRY_CODE: "no known country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

_LENGTH_PROBLEMS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short (a local number without its area code?)",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "of a length no number has",
    ValidationResult.INVALID_COUNTRY_CODE: "no known country code",
}


def to_e164(raw: str, region: str) -> str:
    """``raw`` as E.164 (``+4930123456``); a number without a country code is read as one of
    ``region``. :class:`NumberError` says why a number is not valid."""
    text = raw.strip()
    if not text:
        raise NumberError("empty phone number")
    try:
        parsed = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        problem = _PARSE_PROBLEMS.get(exc.error_type, "not a phone number")
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE and not text.startswith(
            ("+", "00")
        ):
            problem = f"no known country code, and not a national number of {region}"
        raise NumberError(f"phone number {raw!r}: {problem}") from None
    code = parsed.country_code or 0  # parse() always sets it; typed as optional
    where = phonenumbers.region_code_for_country_code(code)
    country = f"+{code}" if where in ("ZZ", "001") else where
    length = phonenumbers.is_possible_number_with_reason(parsed)
    if length in _LENGTH_PROBLEMS:
        raise NumberError(f"phone number {raw!r}: {_LENGTH_PROBLEMS[length]} for {country}")
    if not phonenumbers.is_valid_number(parsed):
        raise NumberError(f"phone number {raw!r}: not a valid number in {country}")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def region_for_country_code(code: str) -> str:
    """The main region of a country calling code (``"1"`` -> ``US``, ``"49"`` -> ``DE``), the
    default region when none is configured; :class:`NumberError` for a code no country has."""
    if not code.isdigit():
        raise NumberError(f"country code {code!r}: digits only, e.g. 49")
    region = phonenumbers.region_code_for_country_code(int(code))
    if region in ("ZZ", "001"):  # unknown, or non-geographic (+800...): no national numbers
        raise NumberError(f"country code {code!r}: no country has it")
    return str(region)


def check_region(region: str) -> str:
    """``region`` if the numbering metadata knows it (an ISO 3166 code such as ``DE``);
    :class:`NumberError` otherwise."""
    if phonenumbers.country_code_for_region(region) == 0:
        raise NumberError(f"region {region!r}: not a country the numbering plans know, e.g. DE")
    return region
