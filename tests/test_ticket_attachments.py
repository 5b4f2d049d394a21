"""Attachment metadata on tickets: the store on SQLite and a real PostgreSQL (attach, list,
detach, each with its audit row in the change's transaction; a merged duplicate's
attachments read and removed through its survivor; closed and merged tickets refuse with
the reason; bad metadata names its field and writes nothing) and the HTTP routes (201, list,
the ticket's read, 204; invalid bodies, oversize, unknown ids and another queue's ticket)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select

import migrations
from tests.test_ticket_http import NEW, Api, api  # noqa: F401 (api: the HTTP fixture)
from tickets.events import TicketChanged
from tickets.schema import ticket_attachments, ticket_changes
from tickets.service import TicketService
from tickets.store import (
    DEFAULT_CATEGORIES,
    DEFAULT_PRIORITIES,
    MAX_ATTACHMENT_SIZE,
    NewTicket,
    TicketInputError,
    TicketStore,
    UnknownAttachment,
    UnknownTicket,
)
from tickets.workflow import IllegalTransition

PDF = ("Rechnung März 2024.pdf", 48_213, "application/pdf", "https://files.example.com/r/1")


@pytest.fixture
def store(migrated_engine: Engine) -> TicketStore:
    return TicketStore(migrated_engine)


def _ticket(store: TicketStore, subject: str = "Lieferung beschädigt") -> int:
    ticket, _ = store.create(NewTicket(subject, "complaint"), by="alice", at=1.0)
    return ticket.id


def _rows(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _close(store: TicketStore, ticket_id: int) -> None:
    for action in ("open", "resolve", "close"):
        store.transition(ticket_id, action, by="alice", at=2.0)


def test_attach_list_detach_each_with_its_audit_row(store: TicketStore) -> None:
    ticket_id = _ticket(store)
    pdf = store.attach(ticket_id, *PDF, by="alice", at=10.0)
    key = store.attach(ticket_id, "scan.png", 0, "image/png", "tickets/2024/01/scan-7.png",
                       by="bob", at=11.0)  # fmt: skip
    assert (pdf.ticket_id, pdf.name, pdf.size, pdf.url) == (ticket_id, PDF[0], PDF[1], PDF[3])
    assert store.attachments(ticket_id) == [pdf, key]
    ticket = store.get(ticket_id)
    assert (ticket.version, ticket.updated_by, ticket.updated_at) == (3, "bob", 11.0)

    assert store.detach(ticket_id, pdf.id, by="sam", at=12.0) == pdf
    assert store.attachments(ticket_id) == [key]
    audit = [(c.field, c.by, c.old, c.new) for c in store.changes(ticket_id)][1:]
    described = {"id": pdf.id, "name": PDF[0], "size": PDF[1], "content_type": PDF[2]}
    assert audit == [
        ("attachment", "alice", None, described),
        ("attachment", "bob", None,
         {"id": key.id, "name": "scan.png", "size": 0, "content_type": "image/png"}),
        ("attachment", "sam", described, None),
    ]  # fmt: skip
    assert store.get(ticket_id).version == 4
    with pytest.raises(UnknownAttachment, match=f"no attachment {pdf.id}"):
        store.detach(ticket_id, pdf.id, by="sam", at=13.0)


def test_the_largest_size_is_taken(store: TicketStore) -> None:
    ticket_id = _ticket(store)
    big = store.attach(ticket_id, "call.wav", MAX_ATTACHMENT_SIZE, "audio/x-wav",
                       "http://recordings.local/call-1.wav", by="alice", at=5.0)  # fmt: skip
    assert store.attachments(ticket_id)[0].size == MAX_ATTACHMENT_SIZE == big.size


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"name": ""}, "name", "empty"),
        ({"name": "  "}, "name", "empty"),
        ({"name": "n" * 256}, "name", "at most 255"),
        ({"name": "../../etc/passwd"}, "name", "not a path"),
        ({"name": "C:\\temp\\a.pdf"}, "name", "not a path"),
        ({"name": ".."}, "name", "no file name"),
        ({"name": "bell\x07.pdf"}, "name", "control characters"),
        ({"name": "line\nbreak.pdf"}, "name", "control characters"),
        ({"size": -1}, "size", "0 or more"),
        ({"size": MAX_ATTACHMENT_SIZE + 1}, "size", f"at most {MAX_ATTACHMENT_SIZE}"),
        ({"size": True}, "size", "no whole number"),
        ({"size": 1.5}, "size", "no whole number"),
        ({"content_type": "pdf"}, "content_type", "type/subtype"),
        ({"content_type": "text/"}, "content_type", "type/subtype"),
        ({"content_type": "text/plain; charset=utf-8"}, "content_type", "type/subtype"),
        ({"content_type": "x" * 64 + "/pdf"}, "content_type", "type/subtype"),
        ({"url": ""}, "url", "empty"),
        ({"url": "folder/my scan.pdf"}, "url", "spaces"),
        ({"url": "key\x00"}, "url", "control characters"),
        ({"url": "javascript:alert(1)"}, "url", "only http or https"),
        ({"url": "ftp://files.example.com/a.pdf"}, "url", "only http or https"),
        ({"url": "https:///no-host"}, "url", "names its host"),
        ({"url": "https://files.example.com/" + "a" * 2000}, "url", "at most 2000"),
    ],
)
def test_bad_metadata_names_the_field_and_writes_nothing(
    store: TicketStore, change: dict[str, Any], field: str, problem: str
) -> None:
    ticket_id = _ticket(store)
    before = store.get(ticket_id)
    names = ("name", "size", "content_type", "url")
    values: dict[str, Any] = dict(zip(names, PDF, strict=True)) | change
    with pytest.raises(TicketInputError) as refused:
        store.attach(ticket_id, values["name"], values["size"], values["content_type"],
                     values["url"], by="alice", at=5.0)  # fmt: skip
    assert refused.value.field == field and problem in refused.value.problem
    assert _rows(store.engine, ticket_attachments) == 0
    assert store.get(ticket_id) == before and len(store.changes(ticket_id)) == 1


def test_closed_and_merged_tickets_refuse_with_the_reason(store: TicketStore) -> None:
    closed, duplicate, survivor = _ticket(store), _ticket(store), _ticket(store)
    kept = store.attach(closed, *PDF, by="alice", at=1.5)
    _close(store, closed)
    store.merge(duplicate, survivor, by="sam", at=3.0)
    audit_rows = _rows(store.engine, ticket_changes)

    with pytest.raises(IllegalTransition, match="reopen it first") as refused:
        store.attach(closed, *PDF, by="alice", at=4.0)
    assert (refused.value.status, refused.value.allowed) == ("closed", ("reopen",))
    with pytest.raises(IllegalTransition, match="reopen it first"):
        store.detach(closed, kept.id, by="alice", at=4.0)
    number = store.get(survivor).number
    with pytest.raises(IllegalTransition, match=f"merged into {number}"):
        store.attach(duplicate, *PDF, by="alice", at=4.0)
    assert store.attachments(closed) == [kept]
    assert _rows(store.engine, ticket_changes) == audit_rows
    assert store.get(closed).version == 5  # created, attach, open, resolve, close
    with pytest.raises(UnknownTicket):
        store.attach(999_999, *PDF, by="alice", at=4.0)
    with pytest.raises(UnknownTicket):
        store.attachments(999_999)


def test_a_merged_duplicates_attachments_are_the_survivors(store: TicketStore) -> None:
    duplicate, survivor, other = _ticket(store), _ticket(store), _ticket(store)
    early = store.attach(duplicate, *PDF, by="alice", at=2.0)
    own = store.attach(survivor, "foto.jpg", 1024, "image/jpeg", "s3-bucket/k/foto.jpg",
                       by="bob", at=3.0)  # fmt: skip
    elsewhere = store.attach(other, *PDF, by="bob", at=3.5)
    store.merge(duplicate, survivor, by="sam", at=4.0)
    assert store.attachments(survivor) == [early, own]
    assert store.attachments(duplicate) == [early]
    with pytest.raises(UnknownAttachment):
        store.detach(survivor, elsewhere.id, by="sam", at=5.0)  # not in its family

    store.detach(survivor, early.id, by="sam", at=5.0)
    assert store.attachments(survivor) == [own]
    gone = {"id": early.id, "name": PDF[0], "size": PDF[1], "content_type": PDF[2]}
    for ticket_id in (survivor, duplicate):
        last = store.changes(ticket_id)[-1]
        assert (last.field, last.by, last.old, last.new) == ("attachment", "sam", gone, None)


class _Settings:
    categories = DEFAULT_CATEGORIES
    priorities = DEFAULT_PRIORITIES


def test_service_attaches_off_the_reactor_and_publishes_the_change(
    tmp_path: Any, reactor: Any, run: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'service.sqlite3'}"
    migrations.upgrade(url)
    engine = create_engine(url)
    service = TicketService(_Settings(), engine=engine, reactor=reactor)
    seen: list[Any] = []
    service.events.subscribe(seen.append, name="test")
    run(service.start())
    try:
        ticket, _ = run(service.create(NewTicket("Rechnung", "complaint"), by="alice"))
        added = run(service.attach(ticket.id, *PDF, by="bob"))
        assert run(service.attachments(ticket.id)) == [added]
        assert run(service.detach(ticket.id, added.id, by="sam")) == added
        assert run(service.attachments(ticket.id)) == []
        changed = [(e.by, e.fields, e.version) for e in seen if isinstance(e, TicketChanged)]
        assert changed == [("bob", ("attachments",), 2), ("sam", ("attachments",), 3)]
    finally:
        service.stop()
        engine.dispose()


# -- the HTTP routes ---------------------------------------------------------------------------

FILE = {"name": "Beleg.pdf", "size": 2_048, "content_type": "application/pdf",
        "url": "https://files.example.com/beleg-1.pdf"}  # fmt: skip


def _made(client: Api, who: str = "alice", **over: Any) -> int:
    made = client.call("POST", "/api/v1/tickets", who, json=NEW | over)
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def test_attach_list_read_and_detach_over_http(api: Api) -> None:  # noqa: F811
    ticket_id = _made(api)
    path = f"/api/v1/tickets/{ticket_id}/attachments"
    added = api.call("POST", path, "alice", json=FILE)
    assert added.status_code == 201, added.text
    attachment = added.json()
    assert attachment == attachment | FILE | {"ticket_id": ticket_id, "added_by": "alice"}
    listed = api.call("GET", path, "alice").json()
    assert listed == {"attachments": [attachment]}
    read = api.call("GET", f"/api/v1/tickets/{ticket_id}", "alice").json()
    assert (read["attachments"], read["version"]) == ([attachment], 2)

    removed = api.call("DELETE", f"{path}/{attachment['id']}", "alice")
    assert removed.status_code == 204 and removed.content == b""
    assert api.call("GET", path, "alice").json() == {"attachments": []}
    again = api.call("DELETE", f"{path}/{attachment['id']}", "alice")
    assert again.status_code == 404
    assert f"no attachment {attachment['id']}" in again.json()["errors"][0]["problem"]
    assert api.rows(ticket_attachments) == 0


def test_the_route_says_only_metadata_is_stored(api: Api) -> None:  # noqa: F811
    document = api.call("GET", "/api/openapi.json", "alice").json()
    summary = document["paths"]["/api/v1/tickets/{ticket_id}/attachments"]["post"]["summary"]
    assert "only the metadata is stored" in summary


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"size": MAX_ATTACHMENT_SIZE + 1}, "body.size"),
        ({"size": -5}, "body.size"),
        ({"size": "2048"}, "body.size"),
        ({"name": "n" * 256}, "body.name"),
        ({"name": "../secret.pdf"}, "body.name"),
        ({"content_type": "application"}, "body.content_type"),
        ({"url": "file:///etc/passwd"}, "body.url"),
        ({"url": "my files/a.pdf"}, "body.url"),
        ({"url": "https://x.example/" + "a" * 2000}, "body.url"),
        ({"colour": "red"}, "body.colour"),
    ],
)
def test_invalid_bodies_name_the_field_and_write_nothing(
    api: Api,  # noqa: F811
    change: dict[str, Any],
    field: str,
) -> None:
    ticket_id = _made(api)
    changes = api.rows(ticket_changes)
    refused = api.call("POST", f"/api/v1/tickets/{ticket_id}/attachments", "alice",
                       json=FILE | change)  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert field in [e["field"] for e in refused.json()["errors"]]
    assert api.rows(ticket_attachments) == 0 and api.rows(ticket_changes) == changes


def test_missing_field_is_named(api: Api) -> None:  # noqa: F811
    ticket_id = _made(api)
    body = {k: v for k, v in FILE.items() if k != "url"}
    refused = api.call("POST", f"/api/v1/tickets/{ticket_id}/attachments", "alice", json=body)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["body.url"]


def test_unknown_ids_and_another_queues_ticket_are_404(api: Api) -> None:  # noqa: F811
    assert api.call("POST", "/api/v1/tickets/999/attachments", "sam", json=FILE).status_code == 404
    assert api.call("GET", "/api/v1/tickets/999/attachments", "sam").status_code == 404
    assert api.call("DELETE", "/api/v1/tickets/999/attachments/1", "sam").status_code == 404
    assert api.call("DELETE", "/api/v1/tickets/1/attachments/x", "sam").status_code == 422
    ticket_id = _made(api)  # queue sales: alice's, not bob's
    path = f"/api/v1/tickets/{ticket_id}/attachments"
    attachment = api.call("POST", path, "alice", json=FILE).json()
    changes = api.rows(ticket_changes)
    assert api.call("POST", path, "bob", json=FILE).status_code == 404
    assert api.call("GET", path, "bob").status_code == 404
    assert api.call("DELETE", f"{path}/{attachment['id']}", "bob").status_code == 404
    assert (api.rows(ticket_attachments), api.rows(ticket_changes)) == (1, changes)
    assert api.call("GET", path, "sam").json() == {"attachments": [attachment]}
    unknown = api.call("DELETE", f"{path}/{attachment['id'] + 1}", "sam")
    assert unknown.status_code == 404 and api.rows(ticket_attachments) == 1


def test_closed_ticket_409_and_merged_duplicate_read_from_survivor(api: Api) -> None:  # noqa: F811
    survivor = _made(api)
    duplicate = _made(api, subject="Doppelt")
    added = api.call("POST", f"/api/v1/tickets/{duplicate}/attachments", "alice", json=FILE)
    merged = api.call("POST", f"/api/v1/tickets/{duplicate}/merge", "sam", json={"into": survivor})
    assert merged.status_code == 200, merged.text
    read = api.call("GET", f"/api/v1/tickets/{survivor}", "alice").json()
    assert read["attachments"] == [added.json()]
    refused = api.call("POST", f"/api/v1/tickets/{duplicate}/attachments", "alice", json=FILE)
    assert refused.status_code == 409
    assert f"merged into T-{survivor:06d}" in refused.json()["errors"][0]["problem"]

    for action in ("open", "resolve", "close"):
        done = api.call("POST", f"/api/v1/tickets/{survivor}/transition", "alice",
                        json={"action": action})  # fmt: skip
        assert done.status_code == 200, done.text
    closed = api.call("POST", f"/api/v1/tickets/{survivor}/attachments", "alice", json=FILE)
    assert closed.status_code == 409 and "reopen" in closed.json()["errors"][0]["problem"]
    assert api.rows(ticket_attachments) == 1
