"""EventStream: ordering, fan-out, async consumers, high/low-water flow control, failures."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from cti.stream import EventStream


@implementer(IPushProducer)
class Producer:
    """Records pause/resume calls like a TCP transport would receive them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class SlowConsumer:
    """An async consumer whose Deferreds the test fires by hand."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.waiting: list[Deferred[None]] = []

    def __call__(self, item: int) -> Deferred[None]:
        self.seen.append(item)
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d

    def finish_one(self) -> None:
        self.waiting.pop(0).callback(None)


def test_sync_consumers_get_every_item_in_order() -> None:
    stream: EventStream[int] = EventStream()
    a: list[int] = []
    b: list[int] = []
    stream.subscribe(a.append)
    stream.subscribe(b.append)
    for i in range(100):
        stream.publish(i)
    assert a == b == list(range(100))
    assert stream.pending == 0


def test_async_consumer_sees_one_item_at_a_time_in_order() -> None:
    stream: EventStream[int] = EventStream()
    slow = SlowConsumer()
    sub = stream.subscribe(slow, max_pending=100)
    for i in range(5):
        stream.publish(i)
    assert slow.seen == [0] and sub.pending == 5
    for _ in range(5):
        slow.finish_one()
    assert slow.seen == [0, 1, 2, 3, 4] and sub.pending == 0
    assert sub.peak_pending == 5 and sub.delivered == 5


def test_already_fired_deferreds_are_consumed_without_recursion() -> None:
    stream: EventStream[int] = EventStream()
    seen: list[int] = []

    def consumer(item: int) -> Deferred[None]:
        seen.append(item)
        return succeed(None)

    stream.subscribe(consumer)
    for i in range(5000):  # deep enough to blow the stack if delivery recursed
        stream.publish(i)
    assert seen == list(range(5000))


def test_pause_at_high_water_resume_at_low_water() -> None:
    stream: EventStream[int] = EventStream()
    producer = Producer()
    stream.register_producer(producer)
    slow = SlowConsumer()
    stream.subscribe(slow, max_pending=4, low_water=1)
    for i in range(3):
        stream.publish(i)
    assert producer.calls == [] and not stream.paused
    stream.publish(3)
    assert producer.calls == ["pause"] and stream.paused
    stream.publish(4)  # a producer may overshoot by what it had in hand: nothing is dropped
    assert producer.calls == ["pause"]
    for _ in range(3):
        slow.finish_one()
    assert producer.calls == ["pause"]  # pending 2 > low water 1
    slow.finish_one()
    assert producer.calls == ["pause", "resume"] and not stream.paused
    slow.finish_one()
    assert slow.seen == [0, 1, 2, 3, 4]


def test_slowest_subscriber_drives_flow_and_fast_one_is_not_held_back() -> None:
    stream: EventStream[int] = EventStream()
    producer = Producer()
    stream.register_producer(producer)
    fast: list[int] = []
    stream.subscribe(fast.append, max_pending=2)
    slow = SlowConsumer()
    stream.subscribe(slow, max_pending=2, low_water=0)
    stream.publish(0)
    stream.publish(1)
    assert fast == [0, 1] and producer.calls == ["pause"]
    slow.finish_one()
    slow.finish_one()
    assert producer.calls == ["pause", "resume"]


def test_producer_registered_while_paused_is_paused_at_once() -> None:
    stream: EventStream[int] = EventStream()
    stream.subscribe(SlowConsumer(), max_pending=1)
    stream.publish(0)
    producer = Producer()
    stream.register_producer(producer)
    assert producer.calls == ["pause"]


def test_pauses_stay_balanced_across_registration_changes() -> None:
    """A producer serving several streams counts their pauses: each needs its resume."""
    stream: EventStream[int] = EventStream()
    slow = SlowConsumer()
    stream.subscribe(slow, max_pending=1)
    first, second = Producer(), Producer()
    stream.register_producer(first)
    stream.publish(0)
    stream.register_producer(first)  # again: no second pause
    assert first.calls == ["pause"]
    stream.register_producer(second)  # replaced while paused: the first one is released
    assert first.calls == ["pause", "resume"] and second.calls == ["pause"]
    stream.unregister_producer()
    assert second.calls == ["pause", "resume"]
    slow.finish_one()  # no producer left to resume
    assert first.calls == second.calls == ["pause", "resume"]


def test_raising_consumer_is_logged_and_does_not_stop_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream: EventStream[int] = EventStream("calls")
    good: list[int] = []

    def bad(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")

    bad_sub = stream.subscribe(bad, name="bad")
    stream.subscribe(good.append, name="good")
    with caplog.at_level(logging.ERROR):
        for i in range(3):
            stream.publish(i)
    assert good == [0, 1, 2]
    assert bad_sub.failures == 1 and bad_sub.delivered == 3
    assert "consumer bad failed on 1" in caplog.text and "boom" in caplog.text


def test_failed_deferred_is_logged_and_delivery_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    stream: EventStream[int] = EventStream()
    slow = SlowConsumer()
    sub = stream.subscribe(slow, name="slow")
    stream.publish(0)
    stream.publish(1)
    with caplog.at_level(logging.ERROR):
        slow.waiting.pop(0).errback(ValueError("bad item"))
    assert slow.seen == [0, 1] and sub.failures == 1
    assert "bad item" in caplog.text


def test_consumer_that_publishes_keeps_order() -> None:
    stream: EventStream[int] = EventStream()
    seen: list[int] = []

    def echo(item: int) -> None:
        seen.append(item)
        if item < 3:
            stream.publish(item + 10)

    stream.subscribe(echo)
    stream.publish(0)
    stream.publish(1)
    assert seen == [0, 10, 1, 11]


def test_unsubscribe_releases_the_producer() -> None:
    stream: EventStream[int] = EventStream()
    producer = Producer()
    stream.register_producer(producer)
    sub = stream.subscribe(SlowConsumer(), max_pending=1)
    stream.publish(0)
    stream.unsubscribe(sub)
    assert producer.calls == ["pause", "resume"] and stream.pending == 0


@pytest.mark.parametrize(("max_pending", "low_water"), [(0, None), (4, 4), (4, -1)])
def test_bad_marks_are_rejected(max_pending: int, low_water: int | None) -> None:
    with pytest.raises(ValueError):
        EventStream[int]().subscribe(print, max_pending=max_pending, low_water=low_water)


@given(st.lists(st.sampled_from(["publish", "finish"]), max_size=200), st.integers(1, 8))
def test_bound_order_and_flow_hold_for_any_interleaving(ops: list[str], high: int) -> None:
    """Paused exactly while some queue is at or above its mark (until it drains to the
    low-water mark), items arrive in order, and the queue never exceeds what was published
    beyond the mark while paused."""
    stream: EventStream[int] = EventStream()
    producer = Producer()
    stream.register_producer(producer)
    slow = SlowConsumer()
    sub = stream.subscribe(slow, max_pending=high)
    n = 0
    for op in ops:
        if op == "publish" and not stream.paused:  # a well-behaved producer stops when paused
            stream.publish(n)
            n += 1
        elif op == "finish" and slow.waiting:
            slow.finish_one()
        assert sub.pending <= high
        if sub.pending >= high:
            assert stream.paused
        if sub.pending <= sub.low_water:
            assert not stream.paused
    while slow.waiting:
        slow.finish_one()
    assert slow.seen == list(range(n))
    assert producer.calls == ["pause", "resume"] * (len(producer.calls) // 2)


def test_window_lets_a_batching_consumer_hold_several_items() -> None:
    stream: EventStream[int] = EventStream()
    producer = Producer()
    stream.register_producer(producer)
    slow = SlowConsumer()
    sub = stream.subscribe(slow, max_pending=8, window=3)
    for i in range(10):
        stream.publish(i)
    assert slow.seen == [0, 1, 2]  # three in flight, the rest queued
    assert sub.pending == 10 and producer.calls == ["pause"]
    while slow.waiting:
        slow.finish_one()
    assert slow.seen == list(range(10))
    assert sub.pending == 0 and producer.calls == ["pause", "resume"]
    with pytest.raises(ValueError, match="window"):
        stream.subscribe(slow, window=0)
