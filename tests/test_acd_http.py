"""The ACD's HTTP routes (``acd.http``) on a real :class:`~acd.service.AcdService` and a
real uvicorn on the reactor's loop: an agent logs in, pauses with a reason, is available
again and logs out through the API and the ACD's state follows; supervisors act on any
agent, agents only on themselves; unknown agents are 404, commands that do not fit the
agent's state 409, bad bodies 422 naming the field. Once on the in-memory store (commands
inline) and once on Redis (commands on the router's thread, awaited by the endpoint)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from fastapi import APIRouter
from sqlalchemy import create_engine
from twisted.internet.defer import Deferred

from acd.agent_status import AgentBoard, AgentStatus, CurrentCall
from acd.agents import AgentState
from acd.config import AcdHistorySettings, AcdServiceSettings
from acd.events import AgentStateChanged, CallerConnected, CallerOffered
from acd.history import metadata as acd_metadata
from acd.http import agent_routes
from acd.service import AcdService
from cti.calls.events import CallArrived, Caller, CallParked, OriginateOutcome
from tests.test_acd_service import FakeAmi
from web.accounts import Account, Accounts
from web.accounts import metadata as web_metadata
from web.api import build_api
from web.auth import current_account
from web.server import ApiServer

T = TypeVar("T")
QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {"sales": {"lanes": ["external"], "ring_timeout": 30}},
    "agents": {
        "6001": {"name": "Alice", "queues": {"sales": 0}},
        "6002": {"name": "Bob", "queues": {"sales": 0}},
    },
}
PASSWORD = "s3cret-pass"


class Desk:
    """The API in front of one AcdService, and a client for it over TCP."""

    def __init__(self, run: Any, url: str, acd: AcdService, tokens: dict[str, str]) -> None:
        self.run, self.url, self.acd, self.tokens = run, url, acd, tokens

    def call(self, method: str, path: str, who: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(base_url=self.url) as client:
                return await client.request(method, path, headers=headers, **kwargs)

        return in_loop(self.run, go())

    def roster_state(self, agent: str) -> AgentState:
        """The router's own view, read where the router runs (its thread with Redis)."""
        d = self.acd.driver.call(lambda: self.acd.router.agents.get(agent).state)
        state: AgentState = self.run(d)
        return state

    def free(self) -> list[str]:
        free: list[str] = self.run(self.acd.driver.call(self.acd.router.available, "sales"))
        return free


def in_loop(run: Any, coro: Coroutine[Any, Any, T]) -> T:
    result: T = run(Deferred.fromFuture(asyncio.ensure_future(coro)), 20)
    return result


def acd_desk(
    tmp_path: Path,
    reactor: Any,
    run: Any,
    *,
    config: Mapping[str, Any] = QUEUES,
    routes: Sequence[Callable[..., APIRouter]] = (agent_routes,),
    **settings: Any,
) -> Iterator[tuple[Desk, FakeAmi, dict[str, str]]]:
    """An ACD of ``config`` (a queues file's content) served with ``routes`` on a free
    port, with the accounts alice and bob (agents 6001, 6002), ghost (agent 6009, unknown
    to the ACD), sam (supervisor) and root (admin), each with a token."""
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
    engine = create_engine(f"sqlite:///{tmp_path / 'desk.sqlite3'}")
    acd_metadata.create_all(engine)
    web_metadata.create_all(engine)
    ami = FakeAmi()
    channels = {"c1": "Local/5003@inbound-00000001;2"}
    acd = AcdService(
        AcdServiceSettings(
            queues=queues,
            pbx="lab",
            login_agents=False,
            history=AcdHistorySettings(spool_dir=tmp_path / "spool", sync_interval=None),
            **settings,
        ),
        reactor=reactor,
        ami=ami,
        caller_channel=channels.get,
        engine=engine,
    )
    acd.start()
    accounts = Accounts(engine)
    accounts.add("alice", PASSWORD, "agent", "6001")
    accounts.add("bob", PASSWORD, "agent", "6002")
    accounts.add("ghost", PASSWORD, "agent", "6009")  # an agent the ACD does not have
    accounts.add("sam", PASSWORD, "supervisor")
    accounts.add("root", PASSWORD, "admin")
    tokens = {
        name: accounts.issue_token(Account(name, role, agent)).token
        for name, role, agent in [(a.username, a.role, a.agent) for a in accounts.list()]
    }
    routers = [route(acd, account=current_account) for route in routes]
    app = build_api(accounts=accounts, routers=routers)
    server = ApiServer(app, reactor=reactor)
    port = run(server.start("127.0.0.1", 0))
    try:
        yield Desk(run, f"http://127.0.0.1:{port}", acd, tokens), ami, channels
    finally:
        run(server.stop())
        acd.stop()
        run(acd.close())
        engine.dispose()


@pytest.fixture
def desk(tmp_path: Path, reactor: Any, run: Any) -> Iterator[tuple[Desk, FakeAmi, dict[str, str]]]:
    yield from acd_desk(tmp_path, reactor, run)


@pytest.fixture
def redis_desk(
    tmp_path: Path, reactor: Any, run: Any, redis_url: str
) -> Iterator[tuple[Desk, FakeAmi, dict[str, str]]]:
    yield from acd_desk(tmp_path, reactor, run, state="redis", redis_url=redis_url)


def _walk_through_the_day(desk: Desk) -> None:
    """Log in, pause, available, log out through the API; the ACD follows each step."""
    assert desk.call("GET", "/api/v1/agent", "alice").json() == {
        "agent": "6001", "state": "logged_out", "reason": None, "since": None, "call": None,
        "queues": {"sales": 0},
    }  # fmt: skip
    logged_in = desk.call("POST", "/api/v1/agent/login", "alice")
    assert logged_in.status_code == 200, logged_in.text
    assert logged_in.json()["state"] == "available" and logged_in.json()["since"]
    assert desk.roster_state("6001") is AgentState.AVAILABLE and desk.free() == ["6001"]

    paused = desk.call("POST", "/api/v1/agent/pause", "alice", json={"reason": "  lunch  "})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["state"], paused.json()["reason"]) == ("paused", "lunch")
    assert desk.roster_state("6001") is AgentState.PAUSED and desk.free() == []
    assert desk.call("GET", "/api/v1/agent", "alice").json()["reason"] == "lunch"

    back = desk.call("POST", "/api/v1/agent/available", "alice")
    assert back.status_code == 200 and back.json()["state"] == "available"
    assert desk.roster_state("6001") is AgentState.AVAILABLE and desk.free() == ["6001"]
    again = desk.call("POST", "/api/v1/agent/available", "alice")  # already: stays so
    assert again.status_code == 200 and again.json()["state"] == "available"

    out = desk.call("POST", "/api/v1/agent/logout", "alice")
    assert out.status_code == 200 and out.json()["state"] == "logged_out"
    assert desk.roster_state("6001") is AgentState.LOGGED_OUT and desk.free() == []
    # "available" from logged out logs in.
    assert desk.call("POST", "/api/v1/agent/available", "alice").json()["state"] == "available"
    assert desk.roster_state("6001") is AgentState.AVAILABLE


def test_an_agent_runs_its_day_through_the_api(desk: Any) -> None:
    _walk_through_the_day(desk[0])


@pytest.mark.redis
def test_with_redis_commands_run_on_the_router_thread_and_the_endpoint_awaits_them(
    redis_desk: Any,
) -> None:
    desk: Desk = redis_desk[0]
    threads: list[str] = []
    login = desk.acd.router.login

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return login(*args)

    desk.acd.router.login = spy  # type: ignore[method-assign, assignment]
    _walk_through_the_day(desk)
    assert threads and threading.main_thread().name not in threads


def test_the_current_call_shows_while_ringing_and_talking(desk: Any) -> None:
    d, ami, channels = desk
    d.call("POST", "/api/v1/agent/login", "alice")
    now = d.acd.reactor.seconds()
    caller = Caller(number="+15551230012", name="Zoë Ångström")
    d.acd.on_call_event(
        CallArrived("c1", now, caller=caller, dialled="5003", channel=channels["c1"])
    )
    d.acd.on_call_event(CallParked("c1", now, "external", channels["c1"]))
    ringing = d.call("GET", "/api/v1/agent", "alice").json()
    assert ringing["state"] == "ringing"
    call = ringing["call"]
    assert (call["call_id"], call["queue"]) == ("c1", "sales")
    assert (call["caller_number"], call["caller_name"]) == ("+15551230012", "Zoë Ångström")
    # Pausing while the phone rings is refused, saying why; nothing changes.
    busy = d.call("POST", "/api/v1/agent/pause", "alice", json={"reason": "coffee"})
    assert busy.status_code == 409 and "cannot pause" in busy.json()["errors"][0]["problem"]
    assert d.roster_state("6001") is AgentState.RINGING

    [leg] = [f["ChannelId"] for name, f in ami.sent if name == "Originate"]
    d.acd.on_call_event(OriginateOutcome(now + 1, leg, "Local/6001@agents-01;1", True, "answered"))
    talking = d.call("GET", "/api/v1/agent", "alice").json()
    assert talking["state"] == "on_call" and talking["call"]["call_id"] == "c1"
    # The supervisor sees the same.
    assert d.call("GET", "/api/v1/agents/6001", "sam").json() == talking


def test_supervisors_act_on_any_agent_and_agents_only_on_themselves(desk: Any) -> None:
    d: Desk = desk[0]
    d.call("POST", "/api/v1/agent/login", "bob")
    refused = d.call("POST", "/api/v1/agents/6002/pause", "alice", json={"reason": "x"})
    assert refused.status_code == 403
    assert "needs the role supervisor or admin, not agent" in refused.json()["errors"][0]["problem"]
    assert d.roster_state("6002") is AgentState.AVAILABLE
    assert d.call("GET", "/api/v1/agents/6002", "alice").status_code == 403

    paused = d.call("POST", "/api/v1/agents/6002/pause", "sam", json={"reason": "coaching"})
    assert paused.status_code == 200 and paused.json()["reason"] == "coaching"
    assert d.roster_state("6002") is AgentState.PAUSED
    out = d.call("POST", "/api/v1/agents/6002/logout", "root")
    assert out.status_code == 200 and out.json()["state"] == "logged_out"
    assert d.roster_state("6002") is AgentState.LOGGED_OUT

    # The agent's own desk is for agent accounts.
    for who in ("sam", "root"):
        own = d.call("POST", "/api/v1/agent/login", who)
        assert own.status_code == 403 and "acts as no ACD agent" in own.text


def test_no_token_is_401_on_every_route(desk: Any) -> None:
    d: Desk = desk[0]
    for method, path in [
        ("GET", "/api/v1/agent"),
        ("POST", "/api/v1/agent/login"),
        ("POST", "/api/v1/agent/available"),
        ("POST", "/api/v1/agent/pause"),
        ("POST", "/api/v1/agent/logout"),
        ("GET", "/api/v1/agents/6001"),
        ("POST", "/api/v1/agents/6001/pause"),
        ("POST", "/api/v1/agents/6001/logout"),
    ]:
        answer = d.call(method, path, None, json={"reason": "lunch"})
        assert answer.status_code == 401, (method, path)
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert d.roster_state("6001") is AgentState.LOGGED_OUT


def test_an_agent_the_acd_does_not_have_is_404_naming_it(desk: Any) -> None:
    d: Desk = desk[0]
    own = d.call("POST", "/api/v1/agent/login", "ghost")
    assert own.status_code == 404
    assert own.json()["errors"][0]["problem"] == (
        "agent '6009' is not in the ACD configuration (its queues file)"
    )
    assert d.call("GET", "/api/v1/agent", "ghost").status_code == 404
    other = d.call("POST", "/api/v1/agents/7777/logout", "sam")
    assert other.status_code == 404 and "'7777'" in other.text


def test_a_command_that_does_not_fit_the_state_is_409_saying_why(desk: Any) -> None:
    d: Desk = desk[0]
    paused = d.call("POST", "/api/v1/agent/pause", "alice", json={"reason": "lunch"})
    assert paused.status_code == 409
    assert paused.json()["errors"][0]["problem"] == (
        "agent 6001 is not logged in: log in before pausing"
    )
    assert d.call("POST", "/api/v1/agent/logout", "alice").status_code == 409
    d.call("POST", "/api/v1/agent/login", "alice")
    twice = d.call("POST", "/api/v1/agent/login", "alice")
    assert twice.status_code == 409 and "already logged in" in twice.text


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "body.reason"), ({"reason": ""}, "body.reason"), ({"reason": "   "}, "body.reason"),
     ({"reason": "x" * 65}, "body.reason"), ({"reason": "a\nb"}, "body.reason"),
     ({"reason": 5}, "body.reason"), (["lunch"], "body")],
)  # fmt: skip
def test_a_bad_pause_reason_is_422_naming_the_field_and_changes_nothing(
    desk: Any, body: Any, field: str
) -> None:
    d: Desk = desk[0]
    d.call("POST", "/api/v1/agent/login", "alice")
    for path, who in (("/api/v1/agent/pause", "alice"), ("/api/v1/agents/6001/pause", "sam")):
        answer = d.call("POST", path, who, json=body)
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert d.roster_state("6001") is AgentState.AVAILABLE


def test_the_routes_are_in_the_openapi_document(desk: Any) -> None:
    paths = desk[0].call("GET", "/api/openapi.json", None).json()["paths"]
    assert {"/api/v1/agent", "/api/v1/agent/pause", "/api/v1/agents/{agent}/logout"} <= set(paths)
    schema = paths["/api/v1/agent/pause"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"]["$ref"].endswith("/PauseIn")


def test_the_board_follows_offers_answers_and_the_end_of_calls() -> None:
    """The pure status board: a ring-all offer shows at both agents, the answer keeps it at
    the one who took it through its wrap-up, and leaves the desk after."""
    board = AgentBoard(["6001", "6002"])
    board.on_call_event(
        CallArrived("c1", 10.0, caller=Caller("+15551230012", "Zoë"), dialled="5003", channel="x")
    )
    for agent in ("6001", "6002"):
        board.on_acd_event(AgentStateChanged(1.0, agent, "available"))
        board.on_acd_event(AgentStateChanged(11.0, agent, "ringing"))
    board.on_acd_event(CallerOffered(11.0, "c1", "sales", ("6001", "6002")))
    assert board.status("6002").call == CurrentCall("c1", "sales", 11.0, "+15551230012", "Zoë")
    board.on_acd_event(AgentStateChanged(12.0, "6001", "on_call"))
    board.on_acd_event(CallerConnected(12.0, "c1", "sales", "6001", wait=2.0))
    board.on_acd_event(AgentStateChanged(12.0, "6002", "available"))
    assert board.status("6001") == AgentStatus(
        "6001", "on_call", None, 12.0, CurrentCall("c1", "sales", 12.0, "+15551230012", "Zoë")
    )
    assert board.status("6002") == AgentStatus("6002", "available", None, 12.0, None)
    board.on_acd_event(AgentStateChanged(40.0, "6001", "wrap_up"))
    wrapping = CurrentCall("c1", "sales", 12.0, "+15551230012", "Zoë")
    assert board.status("6001") == AgentStatus("6001", "wrap_up", None, 40.0, wrapping)
    board.on_acd_event(AgentStateChanged(45.0, "6001", "available"))
    assert board.status("6001") == AgentStatus("6001", "available", None, 45.0, None)
    with pytest.raises(KeyError):
        board.status("6009")


def test_the_process_serves_the_agent_api_on_its_loop(
    reactor: Any, run: Any, tmp_path: Path
) -> None:
    """callcenter.app wiring: with ``http`` enabled the backend serves the API from start
    (port 0: any free one), with the ACD's routes and any a domain adds; an agent's pause
    through it pauses the ACD's agent; stop closes the port."""
    from fastapi import APIRouter

    from tests.e2e import start_backend, start_simulator

    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(QUEUES), encoding="utf-8")
    simulator = start_simulator(reactor)
    env = {"CALLCENTER_ACD__QUEUES": str(queues), "CALLCENTER_ACD__LOGIN_AGENTS": "true"}
    app = start_backend(reactor, run, simulator, tmp_path, env)
    try:
        assert app.api is not None and app.acd is not None and app.api.port
        extra = APIRouter()
        extra.add_api_route("/api/v1/extra", lambda: {"added": True})
        app.add_router(extra)  # as the screen-pop bridge adds its routes
        app.accounts.add("alice", PASSWORD, "agent", "6001")
        url = f"http://127.0.0.1:{app.api.port}"

        async def go() -> tuple[int, dict[str, Any], dict[str, Any]]:
            async with httpx.AsyncClient(base_url=url) as client:
                session = await client.post(
                    "/api/v1/session", json={"username": "alice", "password": PASSWORD}
                )
                auth = {"Authorization": f"Bearer {session.json()['token']}"}
                paused = await client.post(
                    "/api/v1/agent/pause", json={"reason": "training"}, headers=auth
                )
                extra = await client.get("/api/v1/extra")
                return paused.status_code, paused.json(), extra.json()

        status, body, added = in_loop(run, go())
        assert status == 200 and (body["state"], body["reason"]) == ("paused", "training")
        assert added == {"added": True}
        assert app.acd.router.agents.get("6001").state is AgentState.PAUSED
    finally:
        port = app.api.port if app.api is not None else None
        run(app.stop())
        simulator.stopListening()
    with pytest.raises(httpx.ConnectError):
        in_loop(run, httpx.AsyncClient().get(f"http://127.0.0.1:{port}/api/v1/me"))
