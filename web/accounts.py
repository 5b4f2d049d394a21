"""Who may use the API: accounts with hashed passwords, and the bearer tokens they log in for.

Tables (migration 0005 creates them; a test checks the two agree):

* ``accounts`` — one row per person: ``username``, ``password_hash``, ``role`` (agent,
  supervisor or admin), ``agent`` (the ACD agent an agent account acts as, e.g. ``6001``;
  None for the other roles), ``created_at``, ``disabled``.
* ``api_tokens`` — one row per log-in: only the token's SHA-256 is kept (a copy of the
  table lets nobody in), with the account, when it was issued and when it expires.

Passwords are hashed with scrypt (``hashlib.scrypt``), a random salt per account, and kept
as ``scrypt$n$r$p$salt$hash`` (salt and hash in base64), so the cost can be raised later
without breaking older hashes. Every method here does blocking SQL: call it from a worker
thread (FastAPI's for sync endpoints, :meth:`Accounts.account_for_token` for async code),
never from the reactor thread.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "ROLES",
    "Account",
    "AccountError",
    "AccountRecord",
    "Accounts",
    "IssuedToken",
    "Unauthenticated",
    "accounts",
    "api_tokens",
    "hash_password",
    "metadata",
    "verify_password",
]

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("agent", String(32), nullable=True),
    Column("created_at", Float(precision=53), nullable=False),
    Column("disabled", Boolean(), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "username",
        String(64),
        ForeignKey("accounts.username", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", Float(precision=53), nullable=False),
    Column("expires_at", Float(precision=53), nullable=False),
    Index("ix_api_tokens_username", "username"),
)

#: The roles an account may have; each endpoint says which it admits.
ROLES = ("agent", "supervisor", "admin")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # scrypt reads it all: a megabyte "password" is a denial of service

_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_AGENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")

# scrypt's cost: 2**14 x 8 blocks = 16 MiB and ~50 ms per hash on this machine (the
# "interactive log-in" figures of the scrypt paper); maxmem leaves room for higher costs.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 256 * 1024 * 1024


class AccountError(ValueError):
    """An account cannot be created as asked; ``field`` names the input to fix."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class Unauthenticated(Exception):
    """No valid token: missing, unknown, expired, logged out, or its account disabled."""


@dataclass(frozen=True, slots=True)
class Account:
    """Who a request is from."""

    username: str
    role: str
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account as ``callcenter users list`` shows it (no password hash)."""

    username: str
    role: str
    agent: str | None
    created_at: float
    disabled: bool


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just issued: the only time its text exists outside the client."""

    token: str
    expires_at: float
    account: Account


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` for ``password``, with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` is the one ``encoded`` was made from (constant-time compare);
    False for anything that is not a hash of ours."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except ValueError:  # wrong field count, bad base64 or numbers, parameters scrypt refuses
        return False
    return hmac.compare_digest(actual, expected)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that an unknown user costs what a
    wrong password does and the answer's timing does not tell which usernames exist (made
    on first use: importing this module costs no scrypt)."""
    return hash_password(secrets.token_urlsafe(16))


def _check_password(password: str) -> None:
    """:class:`AccountError` (field ``password``) unless ``password`` is strong enough."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError("password", f"too short: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError("password", f"too long: at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip() != password or len(set(password)) < 3:
        raise AccountError(
            "password", "weak: no leading or trailing spaces, at least 3 different characters"
        )


class Accounts:
    """The accounts and tokens in the database at ``engine``.

    ``token_hours``: how long a token is valid after log-in. ``clock``: epoch seconds
    (tests pass their own)."""

    def __init__(
        self,
        engine: Engine,
        *,
        token_hours: float = 12.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token_hours <= 0:
            raise ValueError(f"token_hours must be positive, not {token_hours}")
        self.engine = engine
        self.token_seconds = token_hours * 3600.0
        self.clock = clock

    # -- accounts ----------------------------------------------------------------------

    def add(self, username: str, password: str, role: str, agent: str | None = None) -> Account:
        """Create an account; :class:`AccountError` naming the field when the username is
        malformed or taken, the password weak, the role unknown, or the agent missing (an
        agent account needs one) or given to another role. Nothing is written then."""
        if not _USERNAME.fullmatch(username):
            raise AccountError(
                "username",
                f"{username!r} is not a username: 1 to 64 letters, digits, '.', '_', '@' or "
                "'-', starting with a letter or digit",
            )
        if role not in ROLES:
            raise AccountError("role", f"unknown role {role!r}: one of {', '.join(ROLES)}")
        if role == "agent" and not agent:
            raise AccountError("agent", "an agent account needs the ACD agent it acts as")
        if role != "agent" and agent:
            raise AccountError("agent", f"only agent accounts act as an ACD agent, not {role}")
        if agent is not None and not _AGENT.fullmatch(agent):
            raise AccountError("agent", f"{agent!r} is not an ACD agent name (e.g. 6001)")
        _check_password(password)
        row = {
            "username": username,
            "password_hash": hash_password(password),
            "role": role,
            "agent": agent,
            "created_at": self.clock(),
            "disabled": False,
        }
        try:
            with self.engine.begin() as conn:
                if conn.execute(
                    select(accounts.c.username).where(accounts.c.username == username)
                ).first():
                    raise AccountError("username", f"{username!r} already exists")
                conn.execute(insert(accounts), row)
        except IntegrityError:  # added by someone else between the check and the insert
            raise AccountError("username", f"{username!r} already exists") from None
        return Account(username, role, agent)

    def set_password(self, username: str, password: str) -> None:
        """Give ``username`` a new password; its tokens stay valid until they expire or are
        revoked. :class:`AccountError` for an unknown username or a weak password."""
        _check_password(password)
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(accounts)
                .where(accounts.c.username == username)
                .values(password_hash=hash_password(password))
            ).rowcount
        if not changed:
            raise AccountError("username", f"no account {username!r}")

    def list(self) -> list[AccountRecord]:
        """Every account, by username."""
        query = select(
            accounts.c.username,
            accounts.c.role,
            accounts.c.agent,
            accounts.c.created_at,
            accounts.c.disabled,
        ).order_by(accounts.c.username)
        with self.engine.connect() as conn:
            return [AccountRecord(*row) for row in conn.execute(query)]

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if ``password`` is its password and it is enabled; None otherwise,
        in about the same time whether the username exists or not."""
        query = select(
            accounts.c.password_hash, accounts.c.role, accounts.c.agent, accounts.c.disabled
        ).where(accounts.c.username == username)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            verify_password(password, _dummy_hash())
            return None
        if not verify_password(password, row.password_hash) or row.disabled:
            return None
        return Account(username, row.role, row.agent)

    # -- tokens ------------------------------------------------------------------------

    def issue_token(self, account: Account) -> IssuedToken:
        """A new token for ``account``, valid ``token_hours``; the account's expired tokens
        are cleared on the way."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        expires_at = now + self.token_seconds
        with self.engine.begin() as conn:
            conn.execute(
                delete(api_tokens).where(
                    api_tokens.c.username == account.username, api_tokens.c.expires_at <= now
                )
            )
            conn.execute(
                insert(api_tokens),
                {
                    "token_hash": _token_hash(token),
                    "username": account.username,
                    "created_at": now,
                    "expires_at": expires_at,
                },
            )
        return IssuedToken(token, expires_at, account)

    def account_for(self, token: str) -> Account:
        """The account ``token`` was issued to; :class:`Unauthenticated` when it is unknown,
        expired or logged out, or the account is disabled."""
        query = (
            select(accounts.c.username, accounts.c.role, accounts.c.agent)
            .join(api_tokens, api_tokens.c.username == accounts.c.username)
            .where(
                api_tokens.c.token_hash == _token_hash(token),
                api_tokens.c.expires_at > self.clock(),
                accounts.c.disabled.is_(False),
            )
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise Unauthenticated("invalid or expired token")
        return Account(row.username, row.role, row.agent)

    async def account_for_token(self, token: str) -> Account:
        """:meth:`account_for` from async code (a WebSocket endpoint): the database is read
        on a worker thread, never on the event loop's."""
        return await asyncio.to_thread(self.account_for, token)

    def revoke(self, token: str) -> bool:
        """Log ``token`` out; whether it existed."""
        with self.engine.begin() as conn:
            done = conn.execute(
                delete(api_tokens).where(api_tokens.c.token_hash == _token_hash(token))
            )
        return bool(done.rowcount)
