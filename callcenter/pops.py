"""``callcenter pops``: an agent's screen pops in the terminal, live.

Logs in to the API as the agent (``POST /api/v1/session``), opens the pop feed
(``WS /api/v1/pops``), and prints one line per pop frame, reconnecting with a back-off when
the backend goes away (the feed sends the pop of the call in progress again on reconnect).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import websockets

__all__ = ["PopClientError", "describe_pop", "follow_pops", "log_in"]


class PopClientError(Exception):
    """The pops cannot be followed as asked; the message says why and what to do."""


def log_in(base_url: str, username: str, password: str, timeout: float = 10.0) -> str:
    """A token for ``username`` from the API at ``base_url``."""
    try:
        answer = httpx.post(
            f"{base_url}/api/v1/session",
            json={"username": username, "password": password},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise PopClientError(f"cannot reach the API at {base_url} ({exc})") from None
    if answer.status_code == 401:
        raise PopClientError(f"log-in refused for {username!r}: wrong user name or password")
    if answer.status_code != 200:
        raise PopClientError(f"log-in failed: HTTP {answer.status_code} {answer.text[:200]}")
    token = answer.json().get("token")
    if not isinstance(token, str):
        raise PopClientError("log-in answer has no token")
    return token


def describe_pop(pop: Mapping[str, Any]) -> str:
    """One line for a pop frame: when, what, who, value, queue and wait, IVR, next step."""
    at = time.strftime("%H:%M:%S", time.localtime(float(pop.get("at") or 0)))
    caller = pop.get("caller") or {}
    number = "withheld" if caller.get("withheld") else caller.get("number")
    parts = [f"{at} {pop.get('kind', '?'):<11} call {pop.get('call_id')}", f"from {number}"]
    customer = pop.get("customer")
    if customer:
        parts.append(_customer(customer))
    elif pop.get("identity") == "several":
        names = ", ".join(f"{c.get('id')} {c.get('name')}" for c in pop.get("candidates", []))
        parts.append(f"several customers: {names} (pick one)")
    else:
        parts.append(f"customer {pop.get('identity')}")
    if pop.get("queue"):
        parts.append(f"queue {pop['queue']} waited {pop.get('wait', 0)}s")
    ivr = (pop.get("ivr") or {}).get("digits")
    if ivr:
        parts.append(f"keyed {ivr}")
    if pop.get("note"):
        parts.append(f"({pop['note']})")
    return "  ".join(parts)


def _customer(card: Mapping[str, Any]) -> str:
    text = f"{card.get('name')} [{card.get('id')}]"
    profile = card.get("profile") or {}
    tier = profile.get("tier") or {}
    if tier.get("reason"):
        text += f"  {tier['reason']}"
    elif card.get("tier"):
        text += f"  tier {card['tier']}"
    step = (profile.get("next_step") or {}).get("step")
    if step:
        text += f"  next: {step}"
    return text


async def follow_pops(
    base_url: str,
    token: str,
    show: Callable[[Mapping[str, Any]], None],
    *,
    duration: float | None = None,
    retry_max: float = 10.0,
) -> None:
    """Print pops until ``duration`` seconds have passed (None: for ever), reconnecting
    with a growing pause while the backend is away; a refused token ends it."""
    ws_url = "ws" + base_url.removeprefix("http") + "/api/v1/pops"
    deadline = None if duration is None else time.monotonic() + duration
    delay = 0.5

    async def session() -> None:
        nonlocal delay
        async with websockets.connect(ws_url) as socket:
            await socket.send(json.dumps({"token": token}))
            async for raw in socket:
                message = json.loads(raw)
                delay = 0.5
                if message.get("type") == "pop":
                    show(message["pop"])
                elif message.get("type") == "hello":
                    show({"kind": "connected", "agent": message.get("agent")})

    while deadline is None or time.monotonic() < deadline:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait_for(session(), left)
        except TimeoutError:
            return
        except websockets.ConnectionClosedError as exc:
            if exc.rcvd is not None and exc.rcvd.code in (4401, 4403):
                refusal = exc.rcvd.reason
                raise PopClientError(f"the pop feed refused this account: {refusal}") from None
        except OSError as exc:
            show({"kind": "disconnected", "reason": str(exc)})
        await asyncio.sleep(delay)
        delay = min(retry_max, delay * 2)
