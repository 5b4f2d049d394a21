"""Authentication for the API's endpoints: the bearer token of each request, roles, and the
log-in throttle.

Dependencies (FastAPI's ``Depends``):

* :func:`current_account` — the :class:`~web.accounts.Account` of the request's
  ``Authorization: Bearer <token>``; 401 with ``WWW-Authenticate: Bearer`` when the header is
  missing or the token unknown, expired or logged out. A sync function: FastAPI runs it on
  its thread pool, so the database read never blocks the event loop (the reactor's).
* :func:`require_role` — the same, and 403 unless the account has one of the roles.

For code outside a request's dependencies (a WebSocket that receives its token in a first
message): :func:`accounts_of` the connection, then :func:`account_for_token`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from web.accounts import Account, Accounts, Unauthenticated

__all__ = [
    "LoginThrottle",
    "account_for_token",
    "accounts_of",
    "bearer_token",
    "current_account",
    "require_role",
]

# auto_error off: a missing header gets our 401 (with WWW-Authenticate), not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="a token from POST /api/v1/session")


def accounts_of(connection: HTTPConnection) -> Accounts:
    """The accounts the application was built with (``web.api.build_api``)."""
    accounts: Accounts = connection.app.state.accounts
    return accounts


async def account_for_token(token: str, accounts: Accounts) -> Account:
    """The account of ``token``, read on a worker thread; raises
    :class:`~web.accounts.Unauthenticated` when it is not a valid token."""
    return await accounts.account_for_token(token)


def _unauthenticated(problem: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="callcenter"'
    if error is not None:
        challenge += f', error="{error}"'
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, problem, headers={"WWW-Authenticate": challenge}
    )


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The request's bearer token, as sent (401 when there is none)."""
    if credentials is None or not credentials.credentials:
        raise _unauthenticated("authentication required: Authorization: Bearer <token>")
    return credentials.credentials


def current_account(
    connection: HTTPConnection, token: Annotated[str, Depends(bearer_token)]
) -> Account:
    """Who the request is from (401 unless the token is valid)."""
    try:
        return accounts_of(connection).account_for(token)
    except Unauthenticated:
        raise _unauthenticated(
            "invalid or expired token: log in again (POST /api/v1/session)", "invalid_token"
        ) from None


def require_role(*roles: str) -> Callable[..., Account]:
    """A dependency admitting only accounts with one of ``roles`` (403 for the others)."""
    allowed = ", ".join(roles)

    def admitted(account: Annotated[Account, Depends(current_account)]) -> Account:
        if account.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this needs the role {allowed}, not {account.role}"
            )
        return account

    return admitted


class LoginThrottle:
    """At most ``max_failures`` failed log-ins per key (username and client address) within
    ``window`` seconds; then :meth:`retry_after` says how long to wait. In memory, for one
    process; at most ``max_keys`` keys are remembered (the oldest go first), so a flood of
    made-up usernames cannot fill the memory. Thread-safe (log-ins run on FastAPI's pool)."""

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 60.0,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[Hashable, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, key: Hashable) -> float | None:
        """Seconds until ``key`` may try again, or None when it may now."""
        now = self.clock()
        with self._lock:
            times = self._recent(key, now)
            if times is None or len(times) < self.max_failures:
                return None
            return max(0.0, times[0] + self.window - now)

    def failed(self, key: Hashable) -> None:
        now = self.clock()
        with self._lock:
            times = self._recent(key, now)
            if times is None:
                times = self._failures[key] = deque(maxlen=self.max_failures)
            times.append(now)
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: Hashable, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
