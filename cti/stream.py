"""A small in-process fan-out stream with flow control.

Every subscriber has its own queue, so a slow subscriber delays only itself, and items
reach each subscriber in publish order. A consumer is either synchronous (it returns
``None`` and is called inline) or asynchronous (it returns a :class:`Deferred`). An
asynchronous consumer has at most ``window`` items in flight (default one: the next item
waits for the Deferred); a batching consumer, such as the call history writer, takes a
wide window so that a batch can form.

Items are never dropped. Memory stays bounded by flow control instead: when a subscriber
has ``max_pending`` items waiting (its high-water mark) the stream calls
``pauseProducing()`` on the registered producer (for AMI: the TCP transport, which stops
reading so TCP flow control pushes back on Asterisk) and ``resumeProducing()`` once every
subscriber is back at or below its low-water mark. A producer that delivers in batches (one
socket read) can overshoot the mark by at most one batch. Pauses and resumes come in
balanced pairs, registration included, so a producer serving several streams can count them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a consumer returns: ``None`` when done, or a Deferred that fires when done.
Consumer = Callable[[T], "Deferred[Any] | None"]


class Subscription(Generic[T]):
    """One consumer's queue and counters (read them for monitoring)."""

    __slots__ = (
        "_draining",
        "_in_flight",
        "_queue",
        "consumer",
        "delivered",
        "failures",
        "low_water",
        "max_pending",
        "name",
        "peak_pending",
        "window",
    )

    def __init__(
        self, consumer: Consumer[T], name: str, max_pending: int, low_water: int, window: int
    ) -> None:
        self.consumer = consumer
        self.name = name
        self.max_pending = max_pending
        self.low_water = low_water
        self.window = window
        self._queue: deque[T] = deque()
        self._in_flight = 0
        self._draining = False
        #: Items handed to the consumer (including those that failed).
        self.delivered = 0
        #: Items whose consumer raised or whose Deferred failed.
        self.failures = 0
        #: The largest number of items ever waiting (queued plus the one in flight).
        self.peak_pending = 0

    @property
    def pending(self) -> int:
        """Items published to this subscriber and not yet fully consumed."""
        return len(self._queue) + self._in_flight

    def __repr__(self) -> str:
        return f"<Subscription {self.name} pending={self.pending}/{self.max_pending}>"


class EventStream(Generic[T]):
    """Fan-out of items to subscribers, with a high/low-water signal to one producer."""

    def __init__(self, name: str = "events") -> None:
        self.name = name
        self._subscriptions: list[Subscription[T]] = []
        self._producer: IPushProducer | None = None
        self._paused = False

    @property
    def paused(self) -> bool:
        """True while some subscriber is above its high-water mark (producer paused)."""
        return self._paused

    @property
    def pending(self) -> int:
        """The longest subscriber queue."""
        return max((s.pending for s in self._subscriptions), default=0)

    @property
    def subscriptions(self) -> tuple[Subscription[T], ...]:
        """The current subscriptions, in subscription order."""
        return tuple(self._subscriptions)

    def subscribe(
        self,
        consumer: Consumer[T],
        *,
        max_pending: int = 10_000,
        low_water: int | None = None,
        name: str | None = None,
        window: int = 1,
    ) -> Subscription[T]:
        """Deliver every item published from now on to ``consumer``.

        ``max_pending`` is the high-water mark that pauses the producer; ``low_water``
        (default half of it) is where it resumes; ``window`` bounds the Deferreds of an
        asynchronous consumer that may be outstanding at once.
        """
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if window < 1:
            raise ValueError("window must be at least 1")
        low = max_pending // 2 if low_water is None else low_water
        if not 0 <= low < max_pending:
            raise ValueError("low_water must be in [0, max_pending)")
        sub = Subscription(
            consumer,
            name or str(getattr(consumer, "__qualname__", repr(consumer))),
            max_pending,
            low,
            window,
        )
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, subscription: Subscription[T]) -> None:
        """Stop delivering to ``subscription``; items still queued for it are dropped."""
        self._subscriptions.remove(subscription)
        subscription._queue.clear()
        self._update_flow()

    def register_producer(self, producer: IPushProducer) -> None:
        """The producer to pause and resume; paused at once if the stream is paused.

        A producer replaced while the stream is paused is resumed (as far as this stream is
        concerned), so that every pause it got has its resume.
        """
        if producer is self._producer:
            return
        self.unregister_producer()
        self._producer = producer
        if self._paused:
            producer.pauseProducing()

    def unregister_producer(self) -> None:
        """Forget the producer, releasing the pause this stream holds on it, if any."""
        producer, self._producer = self._producer, None
        if producer is not None and self._paused:
            producer.resumeProducing()

    def publish(self, item: T) -> None:
        """Queue ``item`` for every subscriber and deliver what can be delivered now."""
        for sub in self._subscriptions:
            sub._queue.append(item)
            pending = sub.pending
            if pending > sub.peak_pending:
                sub.peak_pending = pending
            self._drain(sub)
        self._update_flow()

    def _drain(self, sub: Subscription[T]) -> None:
        # The guard makes delivery iterative: a consumer that publishes, or a Deferred
        # that has already fired, must not recurse into this loop.
        if sub._draining:
            return
        sub._draining = True
        try:
            while sub._queue and sub._in_flight < sub.window:
                item = sub._queue.popleft()
                sub.delivered += 1
                try:
                    result = sub.consumer(item)
                except Exception:
                    sub.failures += 1
                    log.exception("%s: consumer %s failed on %s", self.name, sub.name, _short(item))
                    continue
                if isinstance(result, Deferred):
                    sub._in_flight += 1
                    result.addBoth(self._consumed, sub, item)
        finally:
            sub._draining = False

    def _consumed(self, result: object, sub: Subscription[T], item: T) -> None:
        if isinstance(result, Failure):
            sub.failures += 1
            log.error(
                "%s: consumer %s failed on %s: %s",
                self.name,
                sub.name,
                _short(item),
                result.getTraceback(),
            )
        sub._in_flight -= 1
        if sub in self._subscriptions:
            self._drain(sub)
            self._update_flow()

    def _update_flow(self) -> None:
        if not self._paused:
            if any(s.pending >= s.max_pending for s in self._subscriptions):
                self._paused = True
                log.debug("%s: pausing producer (%d pending)", self.name, self.pending)
                if self._producer is not None:
                    self._producer.pauseProducing()
        elif all(s.pending <= s.low_water for s in self._subscriptions):
            self._paused = False
            log.debug("%s: resuming producer", self.name)
            if self._producer is not None:
                self._producer.resumeProducing()


def _short(item: object, limit: int = 200) -> str:
    text = repr(item)
    return text if len(text) <= limit else text[:limit] + "..."
