"""The API's session endpoints, served by a real uvicorn on the reactor's asyncio loop on a
free port of 127.0.0.1, spoken to by httpx over TCP: log-in, who am I, log-out, 401 without
or with a bad token, the log-in throttle, 422 naming the field, the OpenAPI document."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import pytest
import websockets
from fastapi import APIRouter, Depends, WebSocket
from pydantic import BaseModel, Field
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from twisted.internet.defer import Deferred

from web import feed
from web.accounts import Account, Accounts, hash_password, metadata, verify_password
from web.api import build_api
from web.auth import LoginThrottle, require_role
from web.server import ApiServer, ListenError

T = TypeVar("T")


def in_loop(run: Any, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
    """Run ``coro`` as an asyncio task on the reactor's loop (httpx needs a task)."""
    result: T = run(Deferred.fromFuture(asyncio.ensure_future(coro)), timeout)
    return result


class Served:
    """A running API: its base URL and a ``request`` helper over real TCP."""

    def __init__(self, run: Any, url: str, accounts: Accounts) -> None:
        self.run, self.url, self.accounts = run, url, accounts

    def request(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(base_url=self.url) as client:
                return await client.request(method, path, headers=headers, **kwargs)

        return in_loop(self.run, go())

    def log_in(self, username: str, password: str) -> str:
        answer = self.request(
            "POST", "/api/v1/session", json={"username": username, "password": password}
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token


class Echo(BaseModel):
    reason: str = Field(min_length=1, max_length=8)
    count: int


def _extra_routes() -> APIRouter:
    """A domain's router, as acd.http or crm_bridge.http add theirs."""
    router = APIRouter(prefix="/api/v1/test")

    @router.get("/database")
    def database() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    @router.websocket("/feed")
    async def a_feed(socket: WebSocket) -> None:
        await socket.accept()
        who = await feed.hello(socket)
        if who is not None:
            await feed.serve_feed(
                socket,
                connect=lambda send: lambda: None,
                opening=lambda: [{"hello": who.username}],
                what="test feed",
            )

    @router.post("/echo")
    def echo(body: Echo, who: Annotated[Account, Depends(require_role("supervisor"))]) -> Echo:
        return body

    return router


#: Failed log-ins from one address before it waits, in these tests (30 in production).
ADDRESS_FAILURES = 8


@pytest.fixture
def served(tmp_path: Path, reactor: Any, run: Any) -> Iterator[Served]:
    url = f"sqlite:///{tmp_path / 'api.sqlite3'}"
    engine = create_engine(url)
    metadata.create_all(engine)  # migration 0005 is tested in test_web_accounts
    accounts = Accounts(engine, token_hours=1)
    accounts.add("alice", "s3cret-pass", "agent", "6001")
    accounts.add("sam", "super-visor", "supervisor")
    app = build_api(
        accounts=accounts,
        routers=[_extra_routes()],
        title="test",
        version="9",
        throttle=LoginThrottle(max_failures=3, window=60),
        address_throttle=LoginThrottle(max_failures=ADDRESS_FAILURES, window=60),
    )
    server = ApiServer(app, reactor=reactor)
    port = run(server.start("127.0.0.1", 0))
    assert port == server.port and port > 0
    try:
        yield Served(run, f"http://127.0.0.1:{port}", accounts)
    finally:
        run(server.stop())
        engine.dispose()


def test_log_in_who_am_i_and_log_out_over_tcp(served: Served) -> None:
    answer = served.request(
        "POST", "/api/v1/session", json={"username": "alice", "password": "s3cret-pass"}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["account"] == {"username": "alice", "role": "agent", "agent": "6001"}
    assert body["expires_at"].endswith("Z") or body["expires_at"].endswith("+00:00")
    token = body["token"]
    me = served.request("GET", "/api/v1/me", token=token)
    assert me.status_code == 200 and me.json() == body["account"]
    assert served.request("DELETE", "/api/v1/session", token=token).status_code == 204
    after = served.request("GET", "/api/v1/me", token=token)
    assert after.status_code == 401
    assert after.json()["errors"][0]["problem"].startswith("invalid or expired token")
    assert 'error="invalid_token"' in after.headers["www-authenticate"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YTpi"}]
)
def test_no_or_a_bad_token_is_401_with_a_challenge(served: Served, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/api/v1/me"), ("DELETE", "/api/v1/session")):
        answer = served.request(method, path, headers=dict(headers))
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["errors"][0]["field"] is None


def test_an_unknown_user_and_a_wrong_password_get_the_same_answer(served: Served) -> None:
    wrong = served.request(
        "POST", "/api/v1/session", json={"username": "alice", "password": "wrong-pass"}
    )
    unknown = served.request(
        "POST", "/api/v1/session", json={"username": "mallory", "password": "wrong-pass"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"errors": [{"field": None, "problem": "wrong username or password"}]}
    )


def test_failed_log_ins_are_throttled_per_username_and_address(served: Served) -> None:
    bad = {"username": "alice", "password": "wrong-pass"}
    for _ in range(3):
        assert served.request("POST", "/api/v1/session", json=bad).status_code == 401
    refused = served.request("POST", "/api/v1/session", json=bad)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "too many failed log-ins for 'alice'" in refused.json()["errors"][0]["problem"]
    # The right password is refused too while throttled: guessing gains nothing.
    good = {"username": "alice", "password": "s3cret-pass"}
    assert served.request("POST", "/api/v1/session", json=good).status_code == 429
    # Another username is not blocked.
    served.log_in("sam", "super-visor")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"username": "alice"}, ["body.password"]),
        ({"username": "", "password": ""}, ["body.username", "body.password"]),
        ({"username": "x" * 65, "password": "p"}, ["body.username"]),
        ([1, 2], ["body"]),
    ],
)
def test_an_invalid_log_in_body_is_422_naming_each_field(
    served: Served, body: Any, fields: list[str]
) -> None:
    answer = served.request("POST", "/api/v1/session", json=body)
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == fields
    assert all(e["problem"] for e in errors)


def test_json_that_does_not_parse_is_422_on_the_body(served: Served) -> None:
    answer = served.request(
        "POST",
        "/api/v1/session",
        content=b'{"username": "alice", ',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["body"]


def test_a_domain_router_gets_roles_and_field_errors(served: Served) -> None:
    alice, sam = served.log_in("alice", "s3cret-pass"), served.log_in("sam", "super-visor")
    body = {"reason": "lunch", "count": 2}
    assert served.request("POST", "/api/v1/test/echo", json=body).status_code == 401
    forbidden = served.request("POST", "/api/v1/test/echo", json=body, token=alice)
    assert forbidden.status_code == 403
    assert forbidden.json()["errors"][0]["problem"] == ("this needs the role supervisor, not agent")
    assert served.request("POST", "/api/v1/test/echo", json=body, token=sam).json() == body
    bad = served.request(
        "POST", "/api/v1/test/echo", json={"reason": "far too long", "count": "x"}, token=sam
    )
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["body.reason", "body.count"]


def test_the_openapi_document_and_docs_are_served(served: Served) -> None:
    doc = served.request("GET", "/api/openapi.json")
    assert doc.status_code == 200
    spec = doc.json()
    assert spec["info"] == {"title": "test", "version": "9"}
    assert {"/api/v1/session", "/api/v1/me", "/api/v1/test/echo"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert served.request("GET", "/api/docs").status_code == 200


def test_a_taken_port_is_a_listen_error_naming_it(reactor: Any, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        accounts = Accounts(create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}"))
        server = ApiServer(build_api(accounts=accounts), reactor=reactor)
        with pytest.raises(ListenError, match=f"127.0.0.1:{port} .*in use"):
            server.start("127.0.0.1", port)


def test_the_loop_keeps_running_while_a_log_in_hashes(served: Served, run: Any) -> None:
    """scrypt takes tens of milliseconds: on the thread pool, never on the reactor's loop."""
    ticks: list[float] = []

    async def log_in_while_ticking() -> int:
        loop = asyncio.get_running_loop()

        async def tick() -> None:
            while True:
                ticks.append(loop.time())
                await asyncio.sleep(0.002)

        ticker = asyncio.ensure_future(tick())
        try:
            async with httpx.AsyncClient(base_url=served.url) as client:
                answers = await asyncio.gather(*[
                    client.post("/api/v1/session",
                                json={"username": "sam", "password": "super-visor"})
                    for _ in range(4)
                ])  # fmt: skip
        finally:
            ticker.cancel()
        return sum(a.status_code == 200 for a in answers)

    assert in_loop(run, log_in_while_ticking()) == 4
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    # On the loop, each of the four hashes would hold it for a whole hash; measured here
    # on this machine now, so a loaded machine does not turn it into a timing test.
    started = time.perf_counter()
    verify_password("super-visor", hash_password("super-visor"))
    one_hash = (time.perf_counter() - started) / 2
    assert len(ticks) > 10 and max(gaps) < one_hash, (max(gaps), one_hash)


def test_the_demo_serves_the_api_on_a_free_port_when_its_port_is_taken(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "callcenter.cli", "--config",
             str(root / "config/callcenter.yaml"), "demo", "--port", "0", "--duration", "2",
             "--figures-every", "0", "--calls-per-minute", "0"],
            cwd=tmp_path,
            env={**clean, "CALLCENTER_HTTP__PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        f"HTTP port 127.0.0.1:{port} is taken (Address already in use): the API listens on a "
        "free port instead"
    ) in proc.stdout
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("Agent API: ")]
    served = int(line.removeprefix("Agent API: http://127.0.0.1:").removesuffix("/api/docs"))
    assert served not in (0, port)
    # The pages' URL and this run's log-ins, an agent's and the supervisor's.
    pages = f"http://127.0.0.1:{served}"
    assert f"Pages: {pages}/ (agents: /agent, supervisors: /wallboard)" in proc.stdout
    assert f"Log-ins for this run at {pages}/" in proc.stdout
    assert re.search(r"^  agent +6001 +password \S{8,}$", proc.stdout, re.MULTILINE)
    assert re.search(r"^  supervisor +supervisor +password \S{8,}$", proc.stdout, re.MULTILINE)
    assert "API: stopped" in proc.stderr and "Traceback" not in proc.stderr


def test_a_database_that_does_not_answer_is_a_503_to_retry_not_a_500(served: Served) -> None:
    answer = served.request("GET", "/api/v1/test/database")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json() == {"errors": [{
        "field": None,
        "problem": "the database does not answer; nothing was changed: retry in a moment",
    }]}  # fmt: skip


# -- the pages (web/pages.py) --------------------------------------------------------------

PAGE_PATHS = ("/", "/agent", "/wallboard", "/static/agent.js", "/static/common.js",
              "/static/style.css")  # fmt: skip


def test_the_pages_are_served_with_a_strict_policy(served: Served) -> None:
    for path in PAGE_PATHS:
        answer = served.request("GET", path)
        assert answer.status_code == 200, path
        policy = answer.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "unsafe" not in policy, path
        assert "frame-ancestors 'none'" in policy and answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert served.request("GET", "/agent").headers["Content-Type"].startswith("text/html")
    assert "javascript" in served.request("GET", "/static/agent.js").headers["Content-Type"]
    # Nothing outside the static folder is served from it.
    assert served.request("GET", "/static/../api.py").status_code == 404
    assert served.request("GET", "/static/%2e%2e/pages.py").status_code == 404


def test_log_in_sets_no_cookie_and_a_cookie_authenticates_nothing(served: Served) -> None:
    """The pages send the bearer token themselves: no ambient credential for CSRF to use."""
    answer = served.request(
        "POST", "/api/v1/session", json={"username": "sam", "password": "super-visor"}
    )
    assert answer.status_code == 200 and "set-cookie" not in answer.headers
    token = answer.json()["token"]
    cookie = served.request("GET", "/api/v1/me", headers={"Cookie": f"token={token}"})
    assert cookie.status_code == 401


def test_the_pages_and_the_api_docs_load_nothing_from_elsewhere(served: Served) -> None:
    """No CDN: every script, style and request of the pages and of /api/docs is served here."""
    from web.pages import STATIC

    svg_namespace = "http://www.w3.org/2000/svg"  # a name, never fetched
    for file in sorted(STATIC.iterdir()):
        text = file.read_text(encoding="utf-8").replace(svg_namespace, "")
        assert re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text) is None, file.name
        assert re.search(r"""(?:src|href)\s*=\s*["'](?!/static/)""", text) is None, file.name
    docs = served.request("GET", "/api/docs")
    assert docs.status_code == 200
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", docs.text)
    assert assets and all(a.startswith("/api/") for a in assets), assets
    for asset in assets:
        assert served.request("GET", asset).status_code == 200, asset


def test_failed_log_ins_are_throttled_per_address_whatever_the_usernames(served: Served) -> None:
    for n in range(ADDRESS_FAILURES):
        answer = served.request(
            "POST", "/api/v1/session", json={"username": f"guess{n}", "password": "nope"}
        )
        assert answer.status_code == 401
    # The next try from this address waits, even with a right password.
    answer = served.request(
        "POST", "/api/v1/session", json={"username": "sam", "password": "super-visor"}
    )
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) > 0
    assert "from this address" in answer.json()["errors"][0]["problem"]


def test_a_feed_ends_when_its_token_is_revoked(
    served: Served, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket outlives a log-out by at most web.feed.RECHECK seconds (4401)."""
    monkeypatch.setattr(feed, "RECHECK", 0.2)
    token = served.log_in("alice", "s3cret-pass")
    url = served.url.replace("http://", "ws://") + "/api/v1/test/feed"

    async def go() -> tuple[list[str], int | None]:
        async with websockets.connect(url) as socket:
            await socket.send(json.dumps({"token": token}))
            first = await socket.recv()
            assert json.loads(first) == {"hello": "alice"}
            served.accounts.revoke(token)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 5)
            return [str(first)], socket.close_code

    _, code = in_loop(run, go())
    assert code == 4401
