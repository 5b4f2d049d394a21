"""Customers' numbers as E.164 (crm_bridge.numbers): what is accepted, and why the rest is
not."""

from __future__ import annotations

import pytest

from crm_bridge.numbers import NumberError, check_region, region_for_country_code, to_e164


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("030 1234567", "DE", "+49301234567"),  # national, with the trunk prefix
        ("+49 (30) 123-4567", "DE", "+49301234567"),
        ("0049 30 1234567", "DE", "+49301234567"),  # international prefix
        ("(202) 555-0143", "US", "+12025550143"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),  # a country code wins over the region
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+30 210 123 4567", "DE", "+302101234567"),
        ("  +44 7400 123456 ", "DE", "+447400123456"),
    ],
)
def test_numbers_become_e164(raw: str, region: str, e164: str) -> None:
    assert to_e164(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "why"),
    [
        ("", "DE", "empty phone number"),
        ("   ", "DE", "empty phone number"),
        ("abc", "DE", "phone number 'abc': not a phone number"),
        ("12", "DE", "phone number '12': too short (a local number without its area code?) for DE"),
        ("+4930123456789012345", "DE", "phone number '+4930123456789012345': too long for DE"),
        ("+999 1234", "DE", "phone number '+999 1234': no known country code"),
        ("+1 200 555 0100", "DE", "phone number '+1 200 555 0100': not a valid number in US"),
        ("9999999", "DE", "phone number '9999999': not a valid number in DE"),
    ],
)
def test_bad_numbers_say_why(raw: str, region: str, why: str) -> None:
    with pytest.raises(NumberError) as caught:
        to_e164(raw, region)
    assert str(caught.value) == why
    assert isinstance(caught.value, ValueError)


def test_the_region_of_a_country_code_is_its_main_country() -> None:
    assert region_for_country_code("1") == "US"
    assert region_for_country_code("49") == "DE"
    assert region_for_country_code("30") == "GR"
    assert region_for_country_code("7") == "RU"


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("999", "country code '999': no country has it"),
        ("800", "country code '800': no country has it"),  # freephone, no national numbers
        ("+49", "country code '+49': digits only, e.g. 49"),
    ],
)
def test_a_country_code_no_country_has_is_an_error(code: str, why: str) -> None:
    with pytest.raises(NumberError, match="^" + why.replace("+", r"\+") + "$"):
        region_for_country_code(code)


def test_regions_are_checked_against_the_numbering_metadata() -> None:
    assert check_region("DE") == "DE"
    with pytest.raises(NumberError, match="region 'XX': not a country"):
        check_region("XX")
