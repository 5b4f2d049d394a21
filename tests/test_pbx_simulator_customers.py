"""The simulator's callback customers: the ``[outbound]`` context dials them and each dial of
a number meets its next scripted outcome (``Settings.customers``), as Asterisk reports it:
``DialEnd`` with ``DialStatus`` BUSY / NOANSWER / ANSWER, and ``DIALSTATUS`` set."""

from __future__ import annotations

import pytest

from pbx_simulator import Settings
from pbx_simulator.dialplan import lab_dialplan
from tests.test_pbx_simulator_core import Harness

NUMBER = "+4930123456"


def call_back(h: Harness, n: int) -> None:
    """The ACD's Originate of a callback's agent leg (driver._call_back)."""
    h.act(
        "Originate",
        Channel="Local/6001@agents",
        Context="outbound",
        Exten=NUMBER,
        Priority="1",
        Async="true",
        Timeout="15000",
        CallerID=f"<{NUMBER}>",
        ChannelId=f"acd-{n}",
        Variable=f"CTI_CALLBACK=cb-{n}",
    )


def test_each_dial_meets_the_numbers_next_outcome() -> None:
    h = Harness(customers={NUMBER: ("busy", "noanswer", "answer")})
    h.login()
    for n in range(3):
        call_back(h, n)
        h.advance(90)
    ends = [e for e in h.events("DialEnd") if e.get("Channel", "").startswith("Local/6001")]
    assert [e["DialStatus"] for e in ends] == ["BUSY", "NOANSWER", "ANSWER"]
    assert all(e["DestChannel"].startswith(f"Local/{NUMBER}@customers-") for e in ends)
    statuses = [e["Value"] for e in h.events("VarSet") if e["Variable"] == "DIALSTATUS"]
    assert statuses == ["BUSY", "NOANSWER"]  # the answered dial's bridge ended instead
    busy = [e for e in h.events("Hangup") if e["Channel"].startswith(f"Local/{NUMBER}")][:2]
    assert [(e["Cause"], e["Cause-txt"]) for e in busy] == [("17", "User busy")] * 2
    assert h.core.pbx.channels == {}  # every leg hung up after its dial


def test_a_number_not_scripted_answers() -> None:
    h = Harness()
    h.login()
    call_back(h, 1)
    h.advance(30)
    ends = [e for e in h.events("DialEnd") if e.get("Channel", "").startswith("Local/6001")]
    assert [e["DialStatus"] for e in ends] == ["ANSWER"]
    assert len(h.events("BridgeEnter")) == 2


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="'bussy' is not an outcome"):
        lab_dialplan(Settings(customers={NUMBER: ("answer", "bussy")}))
