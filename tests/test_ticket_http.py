"""The tickets' HTTP API over TCP (uvicorn on the reactor's loop, as in the app): create
with Idempotency-Key, read, patch with a version (409 naming the current one), transitions,
comments, assignment, merge, search; invalid bodies, unknown ids, oversize fields and
another queue's ticket each get a clear error and write nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from twisted.internet.defer import Deferred

import migrations
from tickets.http import ticket_routes
from tickets.schema import ticket_changes, tickets
from tickets.service import TicketService
from tickets.store import DEFAULT_CATEGORIES, DEFAULT_PRIORITIES
from web.accounts import Account, Accounts
from web.api import build_api
from web.server import ApiServer

T = TypeVar("T")
PASSWORD = "s3cret-pass"
QUEUES = {"6001": ("sales",), "6002": ("support",)}


class _Settings:
    categories = DEFAULT_CATEGORIES
    priorities = DEFAULT_PRIORITIES


class Api:
    def __init__(self, run: Any, url: str, tokens: dict[str, str], engine: Any) -> None:
        self.run, self.url, self.tokens, self.engine = run, url, tokens, engine

    def call(self, method: str, path: str, who: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}", **kwargs.pop("headers", {})}

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(base_url=self.url) as client:
                return await client.request(method, path, headers=headers, **kwargs)

        return _in_loop(self.run, go())

    def rows(self, table: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _in_loop(run: Any, coro: Coroutine[Any, Any, T]) -> T:
    result: T = run(Deferred.fromFuture(asyncio.ensure_future(coro)), 20)
    return result


@pytest.fixture
def api(tmp_path: Path, reactor: Any, run: Any) -> Iterator[Api]:
    url = f"sqlite:///{tmp_path / 'tickets.sqlite3'}"
    migrations.upgrade(url)
    engine = create_engine(url)
    service = TicketService(_Settings(), engine=engine, reactor=reactor)
    run(service.start())
    accounts = Accounts(engine)
    accounts.add("alice", PASSWORD, "agent", "6001")
    accounts.add("bob", PASSWORD, "agent", "6002")
    accounts.add("sam", PASSWORD, "supervisor")
    tokens = {
        a.username: accounts.issue_token(Account(a.username, a.role, a.agent)).token
        for a in accounts.list()
    }
    routes = ticket_routes(service, queues_of=lambda agent: QUEUES.get(agent, ()))
    server = ApiServer(build_api(accounts=accounts, routers=[routes]), reactor=reactor)
    port = run(server.start("127.0.0.1", 0))
    try:
        yield Api(run, f"http://127.0.0.1:{port}", tokens, engine)
    finally:
        run(server.stop())
        service.stop()
        engine.dispose()


NEW = {"subject": "Paket kam beschädigt an", "category": "complaint", "queue": "sales",
       "calls": [{"call_id": "call-1"}]}  # fmt: skip


def test_create_read_patch_transition_comment(api: Api) -> None:
    made = api.call("POST", "/api/v1/tickets", "alice", json=NEW)
    assert made.status_code == 201, made.text
    ticket = made.json()
    assert (ticket["status"], ticket["version"], ticket["created_by"]) == ("new", 1, "alice")
    read = api.call("GET", f"/api/v1/tickets/{ticket['id']}", "alice").json()
    assert read["calls"] == [{"pbx": "default", "call_id": "call-1"}]
    patched = api.call("PATCH", f"/api/v1/tickets/{ticket['id']}", "alice",
                       json={"version": 1, "priority": "high", "tags": ["paket"]})  # fmt: skip
    assert patched.status_code == 200, patched.text
    assert (patched.json()["priority"], patched.json()["version"]) == ("high", 2)
    opened = api.call("POST", f"/api/v1/tickets/{ticket['id']}/transition", "alice",
                      json={"action": "open", "version": 2})  # fmt: skip
    assert opened.json()["status"] == "open"
    said = api.call("POST", f"/api/v1/tickets/{ticket['id']}/comments", "alice",
                    json={"body": "Ersatz ist unterwegs", "visibility": "public"})  # fmt: skip
    assert said.status_code == 201 and said.json()["first_response_at"] is not None
    illegal = api.call("POST", f"/api/v1/tickets/{ticket['id']}/transition", "alice",
                       json={"action": "close"})  # fmt: skip
    assert illegal.status_code == 409
    assert "resolve it first" in illegal.json()["errors"][0]["problem"]


def test_stale_patch_is_409_naming_the_current_version(api: Api) -> None:
    ticket = api.call("POST", "/api/v1/tickets", "alice", json=NEW).json()
    path = f"/api/v1/tickets/{ticket['id']}"
    assert api.call("PATCH", path, "alice", json={"version": 1, "subject": "A"}).status_code == 200
    stale = api.call("PATCH", path, "sam", json={"subject": "B"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409 and stale.headers["ETag"] == '"2"'
    assert "version 2" in stale.json()["errors"][0]["problem"]
    assert api.call("GET", path, "alice").json()["subject"] == "A"
    missing = api.call("PATCH", path, "alice", json={"subject": "C"})
    assert missing.status_code == 428 and "version" in missing.json()["errors"][0]["problem"]


def test_idempotent_create(api: Api) -> None:
    key = {"Idempotency-Key": "wrapup-call-1"}
    first = api.call("POST", "/api/v1/tickets", "alice", json=NEW, headers=key)
    again = api.call("POST", "/api/v1/tickets", "alice", json=NEW, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and api.rows(tickets) == 1
    other = api.call("POST", "/api/v1/tickets", "alice", json=NEW | {"subject": "x"}, headers=key)
    assert other.status_code == 409 and "wrapup-call-1" in other.json()["errors"][0]["problem"]
    assert api.rows(tickets) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (NEW | {"subject": "s" * 201}, "body.subject"),
        (NEW | {"description": "d" * 20_001}, "body.description"),
        (NEW | {"tags": [f"t{i}" for i in range(21)]}, "body.tags"),
        (NEW | {"tags": ["t" * 41]}, "body.tags.0"),
        (NEW | {"category": "gossip"}, "body.category"),
        (NEW | {"colour": "red"}, "body.colour"),
        ({"category": "complaint"}, "body.subject"),
    ],
)
def test_invalid_bodies_name_the_field_and_write_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    refused = api.call("POST", "/api/v1/tickets", "alice", json=body)
    assert refused.status_code == 422, refused.text
    assert field in [e["field"] for e in refused.json()["errors"]]
    assert api.rows(tickets) == 0 and api.rows(ticket_changes) == 0


def test_unknown_ids_and_another_queues_ticket_are_404(api: Api) -> None:
    assert api.call("GET", "/api/v1/tickets/999", "sam").status_code == 404
    assert api.call("GET", "/api/v1/tickets/abc", "sam").status_code == 422
    ticket = api.call("POST", "/api/v1/tickets", "alice", json=NEW).json()
    path = f"/api/v1/tickets/{ticket['id']}"
    assert api.call("GET", path, "bob").status_code == 404  # sales is not bob's queue
    edit = api.call("PATCH", path, "bob", json={"version": 1, "subject": "mine now"})
    assert edit.status_code == 404
    assert api.call("GET", path, "alice").json()["subject"] == NEW["subject"]
    assert api.call("GET", path, "sam").status_code == 200  # supervisors see all
    elsewhere = api.call("POST", "/api/v1/tickets", "bob", json=NEW)
    assert elsewhere.status_code == 403 and api.rows(tickets) == 1
    listed = api.call("GET", "/api/v1/tickets", "bob").json()
    assert listed == {"tickets": [], "next_before": None}
    assert len(api.call("GET", "/api/v1/tickets", "sam").json()["tickets"]) == 1


def test_assign_merge_and_search(api: Api) -> None:
    a = api.call("POST", "/api/v1/tickets", "alice", json=NEW).json()
    duplicate = NEW | {"subject": "Doppelt: Paket", "calls": [{"call_id": "call-2"}]}
    b = api.call("POST", "/api/v1/tickets", "alice", json=duplicate).json()
    given = api.call("POST", f"/api/v1/tickets/{a['id']}/assign", "sam", json={"agent": "6002"})
    assert given.json()["assignee_agent"] == "6002"
    merged = api.call("POST", f"/api/v1/tickets/{b['id']}/merge", "sam", json={"into": a["id"]})
    assert merged.status_code == 200, merged.text
    survivor = api.call("GET", f"/api/v1/tickets/{a['id']}", "bob").json()  # now bob's
    assert {c["call_id"] for c in survivor["calls"]} == {"call-1", "call-2"}
    found = api.call("GET", "/api/v1/tickets", "sam", params={"text": "doppelt"}).json()
    assert [t["id"] for t in found["tickets"]] == [b["id"]]
    assert found["tickets"][0]["status"] == "merged"
    bad = api.call("GET", "/api/v1/tickets", "sam", params={"limit": 1000})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.limit"
