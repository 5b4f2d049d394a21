"""What the routing core asks the telephony shell to do, and what the shell reports back.

The router is pure: it is fed call events, agent commands, offer outcomes and the time, and
returns :data:`Decision` objects. ``acd.driver`` turns each decision into AMI actions
(Originate, Bridge, Hangup, Redirect) through the ``cti`` client and reports the outcome
with the router's ``offer_answered`` / ``offer_failed`` methods.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Offer:
    """Ring ``agents`` (one, or several for ring-all) for ``call_id``: originate one agent
    leg each, presenting ``caller_number`` so the agent's phone shows who is calling, and
    give up after ``ring_timeout`` seconds."""

    call_id: str
    pbx: str
    queue: str
    agents: tuple[str, ...]
    caller_number: str | None
    ring_timeout: float


@dataclass(frozen=True, slots=True)
class Connect:
    """``agent`` answered: bridge the caller with the agent's leg."""

    call_id: str
    agent: str


@dataclass(frozen=True, slots=True)
class CancelOffer:
    """Stop ringing ``agent`` for ``call_id`` (another agent answered, or the caller left)."""

    call_id: str
    agent: str


@dataclass(frozen=True, slots=True)
class Overflow:
    """Send the caller out of ``queue`` to ``target``: ``kind`` is ``queue`` (another ACD
    queue), ``voicemail`` (a mailbox) or ``callback`` (take a callback request)."""

    call_id: str
    queue: str
    kind: str
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class CallBack:
    """``agent`` takes a callback request that reached the head of ``queue``: ring the
    agent, then dial the customer's ``number`` and connect them."""

    request_id: str
    queue: str
    agent: str
    number: str
    ring_timeout: float = 20.0


Decision = Offer | Connect | CancelOffer | Overflow | CallBack
