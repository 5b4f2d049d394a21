"""Accounts and tokens (``web.accounts``): scrypt hashes, token expiry and log-out, the
rules an account must meet, the log-in throttle, and migration 0005 up and down on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select
from twisted.internet.defer import Deferred

import migrations
from web.accounts import (
    Account,
    AccountError,
    Accounts,
    Unauthenticated,
    api_tokens,
    hash_password,
    verify_password,
)
from web.accounts import accounts as accounts_table
from web.auth import LoginThrottle


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sqlite_accounts(tmp_path: Path) -> tuple[Accounts, Clock]:
    url = f"sqlite:///{tmp_path / 'accounts.sqlite3'}"
    migrations.upgrade(url)
    clock = Clock()
    return Accounts(create_engine(url), token_hours=2, clock=clock), clock


def test_a_password_hash_is_salted_scrypt_and_verifies_only_its_password() -> None:
    one, two = hash_password("correct horse"), hash_password("correct horse")
    assert one != two  # a fresh salt each time
    scheme, n, r, p, salt, digest = one.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert verify_password("correct horse", one) and verify_password("correct horse", two)
    assert not verify_password("correct horsE", one)
    assert not verify_password("", one)
    # A cheaper hash made with other parameters still verifies: they travel with it.
    cheap = hash_password("pässwörd-ünïcode", n=2**10, r=4, p=1)
    assert cheap.startswith("scrypt$1024$4$1$") and verify_password("pässwörd-ünïcode", cheap)


@pytest.mark.parametrize(
    "encoded",
    ["", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA",
     "scrypt$3$8$1$AAAA$AAAA"],
)  # fmt: skip
def test_anything_not_one_of_our_hashes_verifies_nothing(encoded: str) -> None:
    assert not verify_password("whatever1", encoded)


def test_accounts_are_added_listed_and_authenticated(
    sqlite_accounts: tuple[Accounts, Clock],
) -> None:
    accounts, _ = sqlite_accounts
    assert accounts.add("alice", "s3cret-pass", "agent", "6001") == Account(
        "alice", "agent", "6001"
    )
    accounts.add("sam", "super-visor", "supervisor")
    assert [(a.username, a.role, a.agent, a.disabled) for a in accounts.list()] == [
        ("alice", "agent", "6001", False),
        ("sam", "supervisor", None, False),
    ]
    with accounts.engine.connect() as conn:
        stored = conn.execute(select(accounts_table.c.password_hash)).scalars().all()
    assert all(h.startswith("scrypt$") and "s3cret" not in h for h in stored)
    assert accounts.authenticate("alice", "s3cret-pass") == Account("alice", "agent", "6001")
    assert accounts.authenticate("alice", "s3cret-pasS") is None
    assert accounts.authenticate("nobody", "s3cret-pass") is None


@pytest.mark.parametrize(
    ("args", "field", "words"),
    [
        (("bad name", "s3cret-pass", "agent", "6001"), "username", "not a username"),
        (("", "s3cret-pass", "admin", None), "username", "not a username"),
        (("bob", "short", "admin", None), "password", "at least 8"),
        (("bob", "aaaaaaaaaa", "admin", None), "password", "weak"),
        (("bob", " s3cret-pass", "admin", None), "password", "weak"),
        (("bob", "s3cret-pass", "root", None), "role", "unknown role 'root'"),
        (("bob", "s3cret-pass", "agent", None), "agent", "needs the ACD agent"),
        (("bob", "s3cret-pass", "admin", "6001"), "agent", "only agent accounts"),
        (("bob", "s3cret-pass", "agent", "60 01"), "agent", "not an ACD agent name"),
        (("alice", "s3cret-pass", "admin", None), "username", "'alice' already exists"),
    ],
)
def test_an_account_that_breaks_a_rule_is_refused_naming_the_field_and_nothing_is_written(
    sqlite_accounts: tuple[Accounts, Clock], args: tuple[Any, ...], field: str, words: str
) -> None:
    accounts, _ = sqlite_accounts
    accounts.add("alice", "s3cret-pass", "agent", "6001")
    with pytest.raises(AccountError) as caught:
        accounts.add(*args)
    assert caught.value.field == field and words in str(caught.value)
    assert [a.username for a in accounts.list()] == ["alice"]


def test_a_token_is_stored_hashed_works_until_it_expires_and_stops_at_log_out(
    sqlite_accounts: tuple[Accounts, Clock],
) -> None:
    accounts, clock = sqlite_accounts
    alice = accounts.add("alice", "s3cret-pass", "agent", "6001")
    issued = accounts.issue_token(alice)
    assert issued.expires_at == clock.now + 2 * 3600 and len(issued.token) >= 43
    with accounts.engine.connect() as conn:
        hashes = conn.execute(select(api_tokens.c.token_hash)).scalars().all()
    assert hashes == [hashlib.sha256(issued.token.encode()).hexdigest()]
    assert accounts.account_for(issued.token) == alice
    with pytest.raises(Unauthenticated):
        accounts.account_for(hashes[0])  # the stored hash is not a token
    clock.now += 2 * 3600 - 1
    assert accounts.account_for(issued.token) == alice
    clock.now += 1
    with pytest.raises(Unauthenticated):
        accounts.account_for(issued.token)

    fresh = accounts.issue_token(alice)  # clears the expired one on the way
    with accounts.engine.connect() as conn:
        assert conn.execute(select(api_tokens.c.token_hash)).scalars().all() == [
            hashlib.sha256(fresh.token.encode()).hexdigest()
        ]
    assert accounts.revoke(fresh.token) is True
    assert accounts.revoke(fresh.token) is False
    with pytest.raises(Unauthenticated):
        accounts.account_for(fresh.token)


def test_a_disabled_account_neither_logs_in_nor_keeps_its_tokens(
    sqlite_accounts: tuple[Accounts, Clock],
) -> None:
    accounts, _ = sqlite_accounts
    alice = accounts.add("alice", "s3cret-pass", "agent", "6001")
    token = accounts.issue_token(alice).token
    with accounts.engine.begin() as conn:
        conn.execute(accounts_table.update().values(disabled=True))
    assert accounts.authenticate("alice", "s3cret-pass") is None
    with pytest.raises(Unauthenticated):
        accounts.account_for(token)


def test_the_async_look_up_reads_on_a_worker_thread(
    sqlite_accounts: tuple[Accounts, Clock], run: Any
) -> None:
    accounts, _ = sqlite_accounts
    alice = accounts.add("alice", "s3cret-pass", "agent", "6001")
    token = accounts.issue_token(alice).token
    seen: list[str] = []

    async def look_up(token: str) -> Account:
        # As a WebSocket endpoint does: a task on the loop, which stays free meanwhile.
        task = asyncio.ensure_future(accounts.account_for_token(token))
        while not task.done():
            seen.append(threading.current_thread().name)
            await asyncio.sleep(0)
        return task.result()

    def in_loop(token: str) -> Deferred[Account]:
        return Deferred.fromFuture(asyncio.ensure_future(look_up(token)))

    assert run(in_loop(token)) == alice
    assert seen and set(seen) == {threading.main_thread().name}
    with pytest.raises(Unauthenticated):
        run(in_loop("not-a-token"))


def test_the_throttle_refuses_the_sixth_failure_within_a_minute_per_key() -> None:
    clock = Clock(0.0)
    throttle = LoginThrottle(max_failures=5, window=60, clock=clock)
    key, other = ("alice", "10.0.0.1"), ("alice", "10.0.0.2")
    for _ in range(5):
        assert throttle.retry_after(key) is None
        throttle.failed(key)
        clock.now += 1
    assert throttle.retry_after(key) == pytest.approx(55.0)  # the first failure was at 0
    assert throttle.retry_after(other) is None  # another address is not blocked
    clock.now = 60.0  # the first failure leaves the window: one more try
    assert throttle.retry_after(key) is None
    throttle.failed(key)
    assert throttle.retry_after(key) == pytest.approx(1.0)
    throttle.succeeded(key)
    assert throttle.retry_after(key) is None


def test_the_throttle_remembers_a_bounded_number_of_keys() -> None:
    throttle = LoginThrottle(max_failures=1, window=60, max_keys=3, clock=Clock(0.0))
    for name in "abcd":
        throttle.failed((name, "ip"))
    assert throttle.retry_after(("a", "ip")) is None  # the oldest was forgotten
    assert all(throttle.retry_after((n, "ip")) is not None for n in "bcd")


def test_migration_0005_up_and_down(database_url: str) -> None:
    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    assert {"accounts", "api_tokens"} <= set(inspect(engine).get_table_names())
    accounts = Accounts(engine)
    alice = accounts.add("alice", "s3cret-pass", "agent", "6001")
    assert accounts.account_for(accounts.issue_token(alice).token) == alice
    migrations.downgrade(database_url, "0004")
    names = set(inspect(engine).get_table_names())
    assert not {"accounts", "api_tokens"} & names and "customers" in names
    migrations.upgrade(database_url)
    assert Accounts(engine).list() == []
    engine.dispose()


# -- callcenter users add / list ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _users(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    return subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "--config", str(ROOT / "config/callcenter.yaml"),
         "--log-level", "WARNING", "users", *args],
        cwd=tmp_path,
        env={**clean, "CALLCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'cc.sqlite3'}"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


def test_users_add_and_list_from_the_command_line(tmp_path: Path) -> None:
    added = _users(
        tmp_path, "add", "alice", "--role", "agent", "--agent", "6001", "--password-stdin",
        stdin="s3cret-pass\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout == "account alice added (role agent, ACD agent 6001)\n"
    sam = _users(tmp_path, "add", "sam", "--role", "supervisor", "--password-stdin",
                 stdin="super-visor\n")  # fmt: skip
    assert sam.returncode == 0, sam.stderr
    listed = _users(tmp_path, "list")
    assert listed.returncode == 0
    rows = [line.split()[:3] for line in listed.stdout.splitlines()]
    assert rows == [["alice", "agent", "6001"], ["sam", "supervisor", "-"]]
    engine = create_engine(f"sqlite:///{tmp_path / 'cc.sqlite3'}")
    assert Accounts(engine).authenticate("alice", "s3cret-pass") == Account(
        "alice", "agent", "6001"
    )  # the newline ending the line is not part of the password
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "alice", "--role", "agent", "--agent", "6001"], "s3cret-pass\n",
         "USERNAME: 'alice' already exists"),
        (["add", "bob", "--role", "supervisor"], "short\n",
         "password: too short: at least 8 characters"),
        (["add", "bob", "--role", "agent"], "s3cret-pass\n",
         "--agent: an agent account needs the ACD agent it acts as"),
        (["add", "bob", "--role", "agent", "--agent", "9999"], "s3cret-pass\n",
         "--agent: agent '9999' is not in the ACD configuration"),
        (["add", "bob", "--role", "root"], "s3cret-pass\n",
         "argument --role: invalid choice: 'root'"),
    ],
)  # fmt: skip
def test_users_add_refuses_with_a_clear_error_and_adds_nothing(
    tmp_path: Path, args: list[str], stdin: str, message: str
) -> None:
    first = _users(tmp_path, "add", "alice", "--role", "agent", "--agent", "6001",
                   "--password-stdin", stdin="s3cret-pass\n")  # fmt: skip
    assert first.returncode == 0, first.stderr
    refused = _users(tmp_path, *args, "--password-stdin", stdin=stdin)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert [line.split()[0] for line in _users(tmp_path, "list").stdout.splitlines()] == ["alice"]


def test_a_new_password_replaces_the_old_one_and_is_checked_like_any(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.sqlite3'}"
    migrations.upgrade(url)
    accounts = Accounts(create_engine(url))
    accounts.add("6001", "first-password", "agent", agent="6001")
    accounts.set_password("6001", "second-password")
    assert accounts.authenticate("6001", "first-password") is None
    assert accounts.authenticate("6001", "second-password") is not None
    with pytest.raises(AccountError) as weak:
        accounts.set_password("6001", "short")
    assert weak.value.field == "password"
    with pytest.raises(AccountError) as unknown:
        accounts.set_password("nobody", "second-password")
    assert unknown.value.field == "username"
