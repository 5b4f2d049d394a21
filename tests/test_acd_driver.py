"""The ACD driver's failure paths, with a fake AMI client and a fake clock: late answers,
actions that fail at once, a store that fails, overflows whose Redirect fails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from acd.config import parse_acd_config
from acd.driver import AcdDriver
from acd.events import AcdEvent
from acd.router import Router
from crm_bridge.tiers import StaticTiers
from cti.ami.client import AmiConnectionLost
from cti.ami.codec import Message
from cti.calls.events import CallParked, OriginateOutcome

CALLER_CHANNEL = "Local/5003@inbound-00000001;2"


class FakeAmi:
    """Records actions; each answer is decided by ``answer`` (default: success)."""

    name = "fake"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.answer: Any = lambda name, fields: succeed(
            Message([("Response", "Success"), ("ActionID", f"id{len(self.sent)}")])
        )

    def send_action(
        self, name: str, fields: Sequence[tuple[str, str]] = (), *, timeout: float | None = None
    ) -> Deferred[Message]:
        self.sent.append((name, dict(fields)))
        return self.answer(name, fields)

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


def make(
    queue: dict[str, Any] | None = None,
) -> tuple[AcdDriver, Router, FakeAmi, Clock, list[AcdEvent]]:
    config = parse_acd_config(
        {
            "agent_interface": "Local/{agent}@agents",
            "queues": {
                "sales": {
                    "lanes": ["external"],
                    "ring_timeout": 5,
                    "auto_pause_after": 0,
                    "retry": 0,  # one agent: a missed caller rings it again at once
                    **(queue or {}),
                }
            },
            "agents": {"6001": {"name": "Alice", "queues": {"sales": 0}}},
        },
        "test",
    )
    router = Router(config, pbx="default", tiers=StaticTiers())
    ami, clock = FakeAmi(), Clock()
    published: list[AcdEvent] = []
    driver = AcdDriver(
        router,
        ami,
        clock,
        interfaces={"6001": "Local/6001@agents"},
        caller_channel=lambda call_id: CALLER_CHANNEL,
        publish=published.append,
    )
    return driver, router, ami, clock, published


def park(driver: AcdDriver, call_id: str = "c1") -> None:
    driver.on_call_event(CallParked(call_id, 0.0, "external", CALLER_CHANNEL))


def originate_outcome(ami: Any, n: int, success: bool) -> OriginateOutcome:
    """What the call model publishes for the ``n``-th Originate's OriginateResponse (it
    names the leg by the ChannelId the driver chose)."""
    fields = [f for name, f in ami.sent if name == "Originate"][n - 1]
    return OriginateOutcome(
        0.0,
        fields["ChannelId"],
        "Local/6001@agents-00000009;1",
        success,
        "answered" if success else "no answer",
    )


def test_a_late_failure_of_an_old_originate_leaves_the_new_offer_alone() -> None:
    driver, router, ami, clock, _ = make()
    driver.login("6001")
    park(driver)
    assert ami.names() == ["Originate"]
    clock.advance(5.1)  # the router's ring timeout: the caller is offered to 6001 again
    clock.advance(0)
    assert ami.names().count("Originate") == 2
    driver.on_call_event(originate_outcome(ami, 1, success=False))  # the first, late
    clock.advance(0)
    assert ami.names().count("Originate") == 2  # nothing re-offered, nothing counted
    assert router.offers() == {"c1": ("6001",)}


def test_an_action_that_fails_at_once_does_not_recurse() -> None:
    driver, router, ami, clock, _ = make()
    ami.answer = lambda name, fields: fail(AmiConnectionLost("link down"))
    driver.login("6001")
    park(driver)  # Originate fails at once, again and again while the link is down
    clock.advance(0)
    assert ami.names().count("Originate") == 1
    for _ in range(5):
        clock.advance(1.0)
    # One new attempt a second while the link is down; the caller is never dropped.
    assert ami.names().count("Originate") == 6
    assert "c1" in router.offers() or [c.call_id for c in router.waiting("sales")] == ["c1"]


def test_a_failing_store_is_logged_and_routing_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    driver, router, _, clock, _ = make()
    driver.login("6001")
    real_tick = router.tick
    calls = {"n": 0}

    def flaky_tick(now: float) -> list[Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("redis: connection refused")
        return real_tick(now)

    router.tick = flaky_tick  # type: ignore[method-assign]
    park(driver)
    clock.advance(5.1)  # ring timeout: tick raises
    assert "tick" in caplog.text and "failed" in caplog.text
    clock.advance(0.1)  # still scheduled: the next tick runs and re-offers
    assert calls["n"] >= 2


def test_overflow_to_voicemail_redirects_and_a_failed_redirect_hangs_up() -> None:
    driver, _, ami, _, published = make(
        {"max_length": 1, "overflow": {"kind": "voicemail", "target": "600"}}
    )

    def answer(name: str, fields: list[tuple[str, str]]) -> Deferred[Message]:
        if name == "Redirect":
            return fail(RuntimeError("Redirect failed: No such channel"))
        return succeed(Message([("Response", "Success")]))

    ami.answer = answer
    park(driver, "c1")
    park(driver, "c2")  # nobody logged in: c2 finds the queue full
    redirect = dict(ami.sent[0][1])
    assert ami.sent[0][0] == "Redirect"
    assert (redirect["Context"], redirect["Exten"], redirect["Channel"]) == (
        "voicemail",
        "600",
        CALLER_CHANNEL,
    )
    assert ami.sent[1] == ("Hangup", {"Channel": CALLER_CHANNEL, "Cause": "16"})
    assert [e.kind for e in published][-1] == "caller_overflowed"


def test_a_failed_bridge_hangs_up_the_agent_leg_and_offers_the_caller_again() -> None:
    driver, router, ami, clock, _ = make()

    def answer(name: str, fields: list[tuple[str, str]]) -> Deferred[Message]:
        if name == "Bridge":
            return fail(RuntimeError("Bridge failed: Channel1 does not exist"))
        return succeed(Message([("Response", "Success"), ("ActionID", f"id{len(ami.sent)}")]))

    ami.answer = answer
    driver.login("6001")
    park(driver)
    driver.on_call_event(originate_outcome(ami, 1, success=True))  # the agent answered
    clock.advance(0)
    names = ami.names()
    assert names[:3] == ["Originate", "Bridge", "Hangup"]
    assert ami.sent[2][1]["Channel"] == "Local/6001@agents-00000009;1"  # the orphan leg
    assert names.count("Originate") == 2  # the caller, still parked, is offered again
    assert router.agents.get("6001").missed_offers == 0
