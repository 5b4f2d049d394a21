"""The supervisors' wallboard (``acd.wallboard``): the pure rows and what each event
changes (hypothesis: the agent counts always add up, and a queue whose row changed is
always reported), the feed's timing on a fake clock (agents at once, queues coalesced and
refreshed), the queues file's alert thresholds, and the HTTP and WebSocket routes on a real
AcdService behind a real uvicorn (snapshot, agent and queue messages, 4401, 4403, 1013)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from acd.agent_status import AgentBoard
from acd.config import parse_acd_config
from acd.errors import AcdConfigError
from acd.events import (
    AcdEvent,
    AgentQueuesChanged,
    AgentStateChanged,
    CallCompleted,
    CallerAbandoned,
    CallerConnected,
    CallerJoined,
    CallerOffered,
)
from acd.figures import FigureRules, LiveFigures
from acd.http import agent_routes, wallboard_routes
from acd.wallboard import WALLBOARD_WINDOW, Wallboard, WallboardFeed
from cti.calls.events import CallArrived, Caller, CallParked
from tests.e2e import PopClient
from tests.test_acd_http import Desk, acd_desk, in_loop

CONFIG = {
    "queues": {
        "sales": {"service_level": {"percent": 80, "seconds": 20}},
        "support": {
            "service_level": {"percent": 90, "seconds": 30},
            "wallboard": {"amber": 45, "red": 120},
        },
    },
    "agents": {
        "6001": {"name": "Alice", "queues": {"sales": 0}},
        "6002": {"name": "Bob", "queues": {"sales": 1, "support": 0}},
        "6003": {"name": "Carol", "queues": {"support": 0}},
    },
}
AGENTS = ("6001", "6002", "6003")
STATES = ("available", "ringing", "on_call", "wrap_up", "paused", "logged_out")
PASSWORD = "s3cret-pass"


class Board:
    """The wallboard with what the ACD service feeds before it, in the service's order."""

    def __init__(self, config: dict[str, Any] = CONFIG) -> None:
        self.config = parse_acd_config(config, "test")
        self.figures = {
            name: LiveFigures(
                {name: [a for a, c in self.config.agents.items() if name in c.queues]},
                FigureRules(service_threshold=q.service_level.seconds, window=WALLBOARD_WINDOW),
            )
            for name, q in self.config.queues.items()
        }
        self.board = AgentBoard(self.config.agents)
        self.wallboard = Wallboard(self.config, self.figures, self.board)

    def apply(self, event: AcdEvent) -> Any:
        for figures in self.figures.values():
            figures.apply(event)
        self.board.on_acd_event(event)
        return self.wallboard.apply(event)


def test_rows_show_agents_calls_and_queue_figures() -> None:
    b = Board()
    b.board.on_call_event(
        CallArrived("c1", 100.0, caller=Caller("+15551230012", "Zoë"), dialled="5003", channel="x")
    )
    b.apply(AgentStateChanged(90.0, "6001", "available"))
    b.apply(AgentStateChanged(91.0, "6002", "paused", "lunch"))
    b.apply(CallerJoined(100.0, "c1", "sales", "ordinary", 1))
    b.apply(CallerJoined(104.0, "c2", "sales", "ordinary", 2))
    row = b.wallboard.queue_row("sales", 110.0)
    assert row == {
        "queue": "sales",
        "waiting": 2,
        "oldest_since": 100.0,
        "longest_wait": 10.0,
        "alert": {"amber": 20.0, "red": 40.0},  # defaults: the threshold and twice it
        "service_level_target": 0.8,
        "service_threshold": 20.0,
        "agents": {"logged_in": 2, "available": 1, "busy": 0, "paused": 1},
        "today": {
            "offered": 0, "answered": 0, "abandoned": 0, "service_level": None, "asa": None,
            "aht": None, "abandonment_rate": None, "occupancy": 0.0,
        },
        "last_30_min": row["last_30_min"],
    }  # fmt: skip
    assert row["last_30_min"] == row["today"]
    # The configured thresholds, and a queue nobody waits in.
    support = b.wallboard.queue_row("support", 110.0)
    assert support["alert"] == {"amber": 45.0, "red": 120.0}
    assert (support["waiting"], support["oldest_since"], support["longest_wait"]) == (0, None, 0.0)
    assert support["service_level_target"] == 0.9

    b.apply(AgentStateChanged(111.0, "6001", "ringing"))
    change = b.apply(CallerOffered(111.0, "c1", "sales", ("6001",)))
    assert change.agents == ("6001",)
    b.apply(AgentStateChanged(112.0, "6001", "on_call"))
    b.apply(CallerConnected(112.0, "c1", "sales", "6001", wait=12.0))
    b.apply(CallerAbandoned(130.0, "c2", "sales", wait=26.0, position=1))
    assert b.wallboard.agent_row("6001") == {
        "agent": "6001", "state": "on_call", "reason": None, "since": 112.0,
        "queues": ["sales"],
        "call": {"call_id": "c1", "queue": "sales", "caller_number": "+15551230012",
                 "caller_name": "Zoë"},
    }  # fmt: skip
    assert b.wallboard.agent_row("6002")["queues"] == ["support", "sales"]  # by penalty
    assert b.wallboard.agent_row("6002")["reason"] == "lunch"
    assert b.wallboard.agent_row("6003") == {
        "agent": "6003", "state": "logged_out", "reason": None, "since": None,
        "queues": ["support"], "call": None,
    }  # fmt: skip
    last = b.wallboard.queue_row("sales", 140.0)
    assert (last["waiting"], last["oldest_since"]) == (0, None)
    assert last["agents"] == {"logged_in": 2, "available": 0, "busy": 1, "paused": 1}
    period = last["last_30_min"]
    assert (period["offered"], period["answered"], period["abandoned"]) == (2, 1, 1)
    # Answered in time 1 of (answered 1 + abandoned after the threshold 1).
    assert (period["service_level"], period["asa"], period["abandonment_rate"]) == (0.5, 12.0, 0.5)
    # Alice on a call 112..140 of her 90..140 staffed; Bob paused counts nowhere.
    assert period["occupancy"] == pytest.approx(28 / 50)


def test_the_window_is_thirty_minutes_and_today_keeps_the_day() -> None:
    b = Board()
    b.apply(CallerJoined(1000.0, "c1", "sales", "ordinary", 1))
    b.apply(CallerAbandoned(1030.0, "c1", "sales", wait=30.0, position=1))
    inside = b.wallboard.queue_row("sales", 1030.0 + 1799)
    assert inside["last_30_min"]["abandoned"] == 1
    after = b.wallboard.queue_row("sales", 1030.0 + 1801)
    assert after["last_30_min"]["offered"] == 0 and after["today"]["abandoned"] == 1


def test_moving_an_agent_changes_its_queues_and_both_queues_counts() -> None:
    b = Board()
    b.apply(AgentStateChanged(10.0, "6001", "available"))
    change = b.apply(AgentQueuesChanged(20.0, "6001", {"support": 2}, by="sam"))
    assert change.agents == ("6001",) and change.queues == {"sales", "support"}
    assert b.wallboard.agent_row("6001")["queues"] == ["support"]
    assert b.wallboard.queue_row("sales", 21.0)["agents"]["available"] == 0
    assert b.wallboard.queue_row("support", 21.0)["agents"]["available"] == 1
    # A later state change marks its new queue, not the old one.
    assert b.apply(AgentStateChanged(30.0, "6001", "paused", "x")).queues == {"support"}
    # Moved during a sales call: the end of its wrap-up still counts in sales.
    b.apply(AgentStateChanged(40.0, "6002", "on_call"))
    b.apply(CallerConnected(40.0, "c1", "sales", "6002", wait=3.0))
    b.apply(AgentQueuesChanged(41.0, "6002", {"support": 0}, by="sam"))
    b.apply(CallCompleted(50.0, "c1", "sales", "6002", talk_time=10.0))
    b.apply(AgentStateChanged(50.0, "6002", "wrap_up"))
    assert b.apply(AgentStateChanged(60.0, "6002", "available")).queues == {"sales", "support"}
    assert b.wallboard.queue_row("sales", 60.0)["today"]["aht"] == 20.0


def test_events_of_unknown_agents_or_queues_change_no_row() -> None:
    b = Board()
    assert b.apply(AgentStateChanged(1.0, "7777", "available")).agents == ()
    assert b.apply(CallerJoined(1.0, "c9", "nowhere", "ordinary", 1)).queues == frozenset()


_event = st.one_of(
    st.builds(lambda a, s: ("state", a, s), st.sampled_from(AGENTS), st.sampled_from(STATES)),
    st.builds(
        lambda a, qs: ("queues", a, qs),
        st.sampled_from(AGENTS),
        st.dictionaries(st.sampled_from(["sales", "support"]), st.integers(0, 100), min_size=1),
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_event, max_size=40))
def test_agent_counts_always_add_up_and_every_changed_queue_is_reported(
    steps: list[tuple[str, str, Any]],
) -> None:
    b = Board()
    now = 0.0
    for kind, agent, value in steps:
        now += 1.0
        before = {q: b.wallboard.queue_row(q, now)["agents"] for q in b.config.queues}
        if kind == "state":
            event: AcdEvent = AgentStateChanged(now, agent, value)
        else:
            event = AgentQueuesChanged(now, agent, value, by="sam")
        change = b.apply(event)
        assert change.agents == (agent,)
        rows = {r["agent"]: r for r in b.wallboard.agent_rows()}
        for queue in b.config.queues:
            counts = b.wallboard.queue_row(queue, now)["agents"]
            assert counts["logged_in"] == counts["available"] + counts["busy"] + counts["paused"]
            members = [r for r in rows.values() if queue in r["queues"]]
            assert counts["logged_in"] == sum(r["state"] != "logged_out" for r in members)
            if counts != before[queue]:
                assert queue in change.queues


# -- the feed on a fake clock ----------------------------------------------------------


def _feed() -> tuple[Board, WallboardFeed, Clock, list[dict[str, Any]]]:
    b, clock = Board(), Clock()
    clock.advance(1000.0)
    feed = WallboardFeed(b.wallboard, clock)
    sent: list[dict[str, Any]] = []
    return b, feed, clock, sent


def _publish(b: Board, feed: WallboardFeed, event: AcdEvent) -> None:
    # The feed's own ``on_acd_event`` calls the wallboard; the figures and the board first.
    for figures in b.figures.values():
        figures.apply(event)
    b.board.on_acd_event(event)
    feed.on_acd_event(event)


def test_the_feed_sends_agents_at_once_and_queues_coalesced() -> None:
    b, feed, clock, sent = _feed()
    disconnect = feed.connect(lambda text: sent.append(json.loads(text)))
    assert json.loads(feed.snapshot())["type"] == "snapshot"

    _publish(b, feed, AgentStateChanged(1000.0, "6001", "available"))
    assert sent == [{"type": "agent", "agent": b.wallboard.agent_row("6001")}]  # no timer
    clock.advance(0)
    assert [m["type"] for m in sent] == ["agent", "queues"]
    assert [r["queue"] for r in sent[1]["queues"]] == ["sales"] and sent[1]["at"] == 1000.0

    # Within 250 ms of that send, changes wait and go together.
    sent.clear()
    clock.advance(0.05)
    _publish(b, feed, CallerJoined(1000.05, "c1", "sales", "ordinary", 1))
    clock.advance(0.05)
    _publish(b, feed, CallerJoined(1000.1, "c2", "support", "ordinary", 1))
    clock.advance(0.1)
    assert sent == []
    clock.advance(0.051)  # 250 ms after the last send (float sums: a hair more)
    assert len(sent) == 1 and [r["queue"] for r in sent[0]["queues"]] == ["sales", "support"]
    assert sent[0]["queues"][0]["waiting"] == 1 and sent[0]["at"] == pytest.approx(1000.25)

    # Every 10 s, all queues, changed or not.
    sent.clear()
    clock.advance(10.0 - 0.251)
    assert [m["type"] for m in sent] == ["queues"]
    assert [r["queue"] for r in sent[0]["queues"]] == ["sales", "support"]

    # No socket: no timers, nothing sent, and the rows still follow the events.
    disconnect()
    sent.clear()
    _publish(b, feed, AgentStateChanged(1011.0, "6003", "available"))
    assert clock.getDelayedCalls() == [] and sent == []
    assert b.wallboard.agent_row("6003")["state"] == "available"


def test_one_encoding_goes_to_every_socket() -> None:
    b, feed, clock, _ = _feed()
    first: list[str] = []
    second: list[str] = []
    feed.connect(first.append)
    feed.connect(second.append)
    _publish(b, feed, AgentStateChanged(1000.0, "6002", "paused", "training"))
    clock.advance(0)
    assert len(first) == 2 and first == second and first[0] is second[0]
    assert feed.sockets == 2


# -- the queues file -------------------------------------------------------------------


def test_alert_thresholds_are_checked_in_the_queues_file() -> None:
    bad = {"queues": {"sales": {"wallboard": {"amber": 60, "red": 30}}}}
    with pytest.raises(AcdConfigError, match=r"queues\.sales.*red must be at least amber"):
        parse_acd_config(bad, "q.yaml")
    with pytest.raises(AcdConfigError, match=r"queues\.sales\.wallboard\.amber"):
        parse_acd_config({"queues": {"sales": {"wallboard": {"amber": -1}}}}, "q.yaml")
    with pytest.raises(AcdConfigError, match=r"queues\.sales\.wallboard\.orange.*spelling"):
        parse_acd_config({"queues": {"sales": {"wallboard": {"orange": 1}}}}, "q.yaml")
    only_red = parse_acd_config({"queues": {"sales": {"wallboard": {"red": 90}}}}, "q.yaml")
    assert only_red.queues["sales"].wallboard_alerts() == (20.0, 90.0)


# -- HTTP and WebSocket on a real service ------------------------------------------------

QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {
        "sales": {"lanes": ["external"], "ring_timeout": 30},
        "support": {"lanes": ["help"]},
    },
    "agents": {
        "6001": {"name": "Alice", "queues": {"sales": 0}},
        "6002": {"name": "Bob", "queues": {"support": 0}},
    },
}


@pytest.fixture
def desk(tmp_path: Path, reactor: Any, run: Any) -> Iterator[Desk]:
    routes = (agent_routes, wallboard_routes)
    for served, _, _ in acd_desk(tmp_path, reactor, run, config=QUEUES, routes=routes):
        yield served


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait, the loop running, until ``predicate()`` holds (asyncio's sleep: httpx and
    the socket clients run as asyncio tasks here)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def _ws(d: Desk) -> str:
    return d.url.replace("http://", "ws://") + "/api/v1/wallboard/feed"


def test_the_snapshot_is_for_supervisors_and_admins(desk: Desk) -> None:
    desk.call("POST", "/api/v1/agent/login", "alice")
    for who in ("sam", "root"):
        answer = desk.call("GET", "/api/v1/wallboard", who)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["type"] == "snapshot" and isinstance(body["at"], float)
        assert [q["queue"] for q in body["queues"]] == ["sales", "support"]
        assert body["queues"][0]["agents"]["available"] == 1
        alice = body["agents"][0]
        assert (alice["agent"], alice["state"], alice["queues"]) == ("6001", "available", ["sales"])
        assert isinstance(alice["since"], float)
    refused = desk.call("GET", "/api/v1/wallboard", "alice")
    assert refused.status_code == 403
    assert refused.json() == {"errors": [{"field": None, "problem":
        "the wallboard needs the role supervisor or admin, not agent"}]}  # fmt: skip
    assert desk.call("GET", "/api/v1/wallboard", None).status_code == 401


def test_the_feed_sends_the_snapshot_then_agents_and_queues(desk: Desk, run: Any) -> None:
    async def go() -> PopClient:
        board = PopClient(_ws(desk), desk.tokens["sam"])
        await until(lambda: len(board.messages) >= 1)
        async with httpx.AsyncClient(base_url=desk.url) as client:
            auth = {"Authorization": f"Bearer {desk.tokens['alice']}"}
            await client.post("/api/v1/agent/login", headers=auth)
        await until(lambda: any(m["type"] == "queues" for m in board.messages))
        now = desk.acd.reactor.seconds()
        caller = Caller(number="+15551230012", name="Zoë")
        desk.acd.on_call_event(CallArrived("c1", now, caller=caller, dialled="5003",
                                           channel="Local/5003@inbound-00000001;2"))  # fmt: skip
        desk.acd.on_call_event(CallParked("c1", now, "external", "Local/5003@inbound-00000001;2"))
        await until(lambda: any(
            m["type"] == "agent" and m["agent"]["call"] is not None for m in board.messages
        ))  # fmt: skip
        await asyncio.sleep(0.4)  # the coalesced queue row follows
        board.stop()
        return board

    board = in_loop(run, go())
    snapshot, *rest = board.messages
    assert snapshot["type"] == "snapshot" and snapshot["agents"][0]["state"] == "logged_out"
    agents = [m["agent"] for m in rest if m["type"] == "agent"]
    assert [a["state"] for a in agents][:2] == ["available", "ringing"]
    assert agents[-1]["call"] == {
        "call_id": "c1", "queue": "sales", "caller_number": "+15551230012", "caller_name": "Zoë"
    }  # fmt: skip
    queues = [m for m in rest if m["type"] == "queues"]
    assert all([r["queue"] for r in m["queues"]] == ["sales"] for m in queues)  # support: no change
    assert queues[0]["queues"][0]["agents"]["available"] == 1
    # The caller joined, then was offered: it shows waiting from its join until answered.
    joined = [m["queues"][0] for m in queues if m["queues"][0]["waiting"]]
    assert joined and joined[-1]["oldest_since"] is not None


def test_the_feed_refuses_bad_tokens_and_agents(desk: Desk, run: Any) -> None:
    async def go() -> tuple[PopClient, PopClient]:
        stranger = PopClient(_ws(desk), "not-a-token")
        agent = PopClient(_ws(desk), desk.tokens["alice"])
        await until(lambda: stranger.task.done() and agent.task.done())
        return stranger, agent

    stranger, agent = in_loop(run, go())
    assert (stranger.close_code, stranger.messages) == (4401, [])
    assert (agent.close_code, agent.messages) == (4403, [])


def test_an_agent_s_desk_feed_sends_its_own_row_and_nobody_else_s(desk: Desk, run: Any) -> None:
    url = desk.url.replace("http://", "ws://") + "/api/v1/agent/feed"

    async def go() -> tuple[PopClient, PopClient, PopClient]:
        alice = PopClient(url, desk.tokens["alice"])
        sam = PopClient(url, desk.tokens["sam"])
        stranger = PopClient(url, "not-a-token")
        await until(lambda: len(alice.messages) >= 1 and sam.task.done() and stranger.task.done())
        async with httpx.AsyncClient(base_url=desk.url) as client:
            await client.post("/api/v1/agent/login",
                              headers={"Authorization": f"Bearer {desk.tokens['alice']}"})
            await client.post("/api/v1/agents/6001/pause", json={"reason": "coaching"},
                              headers={"Authorization": f"Bearer {desk.tokens['sam']}"})
        # Bob's change reaches no desk of Alice's.
        desk.acd.wallboard.on_acd_event(AgentStateChanged(1.0, "6002", "paused", "x"))
        await until(lambda: any(m["agent"]["state"] == "paused" for m in alice.messages))
        alice.stop()
        return alice, sam, stranger

    alice, sam, stranger = in_loop(run, go())
    assert (sam.close_code, stranger.close_code) == (4403, 4401)
    first, *changes = alice.messages
    assert first["type"] == "agent" and first["agent"]["state"] == "logged_out"
    assert isinstance(first["at"], float)
    assert {m["agent"]["agent"] for m in alice.messages} == {"6001"}
    assert [m["agent"]["state"] for m in changes] == ["available", "paused"]
    assert changes[-1]["agent"]["reason"] == "coaching"


def test_a_socket_too_far_behind_is_closed_with_1013(desk: Desk, run: Any) -> None:
    async def go() -> PopClient:
        board = PopClient(_ws(desk), desk.tokens["root"])
        await until(lambda: len(board.messages) >= 1)
        # More agent rows in one loop turn than a socket may have queued.
        for i in range(300):
            desk.acd.wallboard.on_acd_event(AgentStateChanged(float(i), "6002", "paused", "x"))
        await until(lambda: board.task.done() and desk.acd.wallboard.sockets == 0)
        return board

    board = in_loop(run, go())
    assert board.close_code == 1013 and board.messages[0]["type"] == "snapshot"
    # Unsubscribed: no timer keeps running for it.
    assert not desk.acd.wallboard._refresher.running


def test_the_process_serves_the_wallboard(reactor: Any, run: Any, tmp_path: Path) -> None:
    """callcenter.app wiring: the backend, on the PBX simulator, serves the snapshot and
    the feed; the agents it logged in at its first snapshot show available."""
    from tests.e2e import start_backend, start_simulator

    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(QUEUES), encoding="utf-8")
    simulator = start_simulator(reactor)
    env = {"CALLCENTER_ACD__QUEUES": str(queues), "CALLCENTER_ACD__LOGIN_AGENTS": "true"}
    app = start_backend(reactor, run, simulator, tmp_path, env)
    try:
        assert app.api is not None and app.acd is not None
        app.accounts.add("sam", PASSWORD, "supervisor")
        url = f"http://127.0.0.1:{app.api.port}"

        async def go() -> tuple[dict[str, Any], PopClient]:
            async with httpx.AsyncClient(base_url=url) as client:
                session = await client.post(
                    "/api/v1/session", json={"username": "sam", "password": PASSWORD}
                )
                token = session.json()["token"]
                auth = {"Authorization": f"Bearer {token}"}
                snapshot = (await client.get("/api/v1/wallboard", headers=auth)).json()
            board = PopClient(url.replace("http", "ws") + "/api/v1/wallboard/feed", token)
            await until(lambda: len(board.messages) >= 1)
            board.stop()
            return snapshot, board

        snapshot, board = in_loop(run, go())
        assert [a["state"] for a in snapshot["agents"]] == ["available", "available"]
        assert [q["agents"]["available"] for q in snapshot["queues"]] == [1, 1]
        assert board.messages[0]["type"] == "snapshot"
        assert board.messages[0]["agents"] == snapshot["agents"]
    finally:
        run(app.stop())
        simulator.stopListening()
