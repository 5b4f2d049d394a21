"""Caller-number normalisation to E.164."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti.calls.numbers import DEFAULT_PLAN, WITHHELD, NumberingPlan, normalise

DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=16)
UK = NumberingPlan(country_code="44", national_length=10, international_prefixes=("00",),
                   trunk_prefix="0")  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("5551230001", "+15551230001"),  # 10 digits in the lab's plan
        ("+15551230001", "+15551230001"),
        ("+442071234567", "+442071234567"),
        ("13912345678", "13912345678"),  # a foreign national number: left alone
        ("01181312345678", "+81312345678"),  # NANP international prefix
        ("004930123456", "+4930123456"),
        (" (555) 123-0001 ", "+15551230001"),
        ("+1 555 123 0001", "+15551230001"),
        ("support", "support"),  # a SIP user, not a number
        ("<unknown>", None),
        ("", None),
        ("anonymous", None),
        ("Unknown", None),
        (None, None),
    ],
)
def test_lab_plan(raw: str | None, e164: str | None) -> None:
    assert normalise(raw) == e164


def test_trunk_prefix_plan() -> None:
    assert normalise("02071234567", UK) == "+442071234567"
    assert normalise("2071234567", UK) == "+442071234567"
    assert normalise("0033142685300", UK) == "+33142685300"


@given(DIGITS)
def test_ten_digits_become_nanp(digits: str) -> None:
    number = (digits * 10)[:10]
    if not number.startswith(DEFAULT_PLAN.international_prefixes):
        assert normalise(number) == "+1" + number


@given(DIGITS)
def test_plus_numbers_are_kept(digits: str) -> None:
    assert normalise("+" + digits) == "+" + digits


@given(st.one_of(st.text(max_size=20), DIGITS, st.sampled_from(sorted(WITHHELD))))
def test_normalising_is_idempotent_and_total(raw: str) -> None:
    once = normalise(raw)
    assert once is None or normalise(once) == once
    assert once is None or once.startswith("+") or once == raw.strip() or once.isdigit()


@given(st.sampled_from(sorted(WITHHELD)), st.sampled_from(["", " ", "  "]))
def test_withheld_in_any_case_and_padding(word: str, pad: str) -> None:
    assert normalise(pad + word.upper() + pad) is None


@given(DIGITS, st.sampled_from([DEFAULT_PLAN, UK]))
def test_results_are_e164_or_the_digits_unchanged(digits: str, plan: NumberingPlan) -> None:
    out = normalise(digits, plan)
    assert out is not None
    assert (out.startswith("+") and out[1:].isdigit()) or out == digits
