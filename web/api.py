"""The API application: log-in, log-out, who am I, and the routes the domains add.

:func:`build_api` makes the FastAPI application; ``web.server.ApiServer`` serves it. The
OpenAPI document is at ``/api/openapi.json``, its pages at ``/api/docs`` (Swagger UI from the
pinned ``fastapi-offline`` package: no CDN). The people's pages (``web.pages``) are served
by the same application.

Every error answers ``{"errors": [{"field": ..., "problem": ...}]}``: a body that does not
validate is a 422 naming each bad field (``body.reason``, ``body`` for JSON that does not
parse); the others (401, 403, 404, 409, 429, and 503 while the database does not
answer) have one entry whose ``field`` is null.

Endpoints that read the database are sync functions: FastAPI runs them on its thread pool,
so the event loop, which is also Twisted's reactor, never waits for SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from web.accounts import Account, Accounts
from web.auth import LoginThrottle, bearer_token, current_account
from web.pages import add_pages

log = logging.getLogger(__name__)

__all__ = ["AccountOut", "ErrorOut", "LogIn", "SessionOut", "build_api"]


class LogIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class AccountOut(BaseModel):
    username: str
    role: str
    agent: str | None

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(username=account.username, role=account.role, agent=account.agent)


class SessionOut(BaseModel):
    token: str = Field(description="send it as 'Authorization: Bearer <token>'")
    expires_at: datetime
    account: AccountOut


class Problem(BaseModel):
    field: str | None = Field(description="the input at fault, e.g. body.reason; null if none")
    problem: str


class ErrorOut(BaseModel):
    errors: list[Problem]


def build_api(
    *,
    accounts: Accounts,
    routers: Sequence[APIRouter] = (),
    title: str = "callcenter",
    version: str = "1",
    throttle: LoginThrottle | None = None,
    address_throttle: LoginThrottle | None = None,
) -> FastAPI:
    """The application: the session routes, then ``routers`` (more can be added with
    ``include_router`` until it serves). ``throttle`` limits failed log-ins per username
    and client address; ``address_throttle`` per client address, whatever the usernames
    tried (default 30 in 10 minutes)."""
    app = FastAPIOffline(
        title=title,
        version=version,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        static_url="/api/docs-files",
        responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    app.state.accounts = accounts
    app.state.throttle = throttle if throttle is not None else LoginThrottle()
    app.state.address_throttle = (
        address_throttle if address_throttle is not None
        else LoginThrottle(max_failures=30, window=600.0)
    )  # fmt: skip
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _refused)
    app.add_exception_handler(OperationalError, _database_down)
    app.include_router(_session_routes())
    for router in routers:
        app.include_router(router)
    add_pages(app)
    return app


def _session_routes() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["session"])

    @router.post(
        "/session",
        responses={401: {"model": ErrorOut}, 429: {"model": ErrorOut}},
        summary="log in: a token for the other endpoints",
    )
    def log_in(body: LogIn, request: Request) -> SessionOut:
        accounts: Accounts = request.app.state.accounts
        throttle: LoginThrottle = request.app.state.throttle
        by_address: LoginThrottle = request.app.state.address_throttle
        client = request.client.host if request.client is not None else "?"
        key = (body.username.lower(), client)
        for wait, whose in (
            (by_address.retry_after(client), "from this address"),
            (throttle.retry_after(key), f"for {body.username!r}"),
        ):
            if wait is not None:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"too many failed log-ins {whose}: try again in {wait:.0f} s",
                    headers={"Retry-After": str(max(1, round(wait)))},
                )
        account = accounts.authenticate(body.username, body.password)
        if account is None:
            throttle.failed(key)
            # Not forgiven by a later success: one known password must not reopen guessing.
            by_address.failed(client)
            # One answer for an unknown user and a wrong password: usernames stay private.
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "wrong username or password",
                headers={"WWW-Authenticate": 'Bearer realm="callcenter"'},
            )
        throttle.succeeded(key)
        issued = accounts.issue_token(account)
        return SessionOut(
            token=issued.token,
            expires_at=datetime.fromtimestamp(issued.expires_at, UTC),
            account=AccountOut.of(account),
        )

    @router.delete(
        "/session",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="log out: the token stops working",
    )
    def log_out(
        request: Request,
        account: Annotated[Account, Depends(current_account)],
        token: Annotated[str, Depends(bearer_token)],
    ) -> None:
        accounts: Accounts = request.app.state.accounts
        accounts.revoke(token)

    @router.get("/me", summary="the account the token belongs to")
    def me(account: Annotated[Account, Depends(current_account)]) -> AccountOut:
        return AccountOut.of(account)

    return router


def _field(loc: Sequence[Any]) -> str:
    """``("body", "reason")`` -> ``body.reason``; ``("body", 12)``, JSON that does not parse
    at character 12, -> ``body``; list items keep their index (``body.items.0``)."""
    if len(loc) == 2 and loc[0] == "body" and isinstance(loc[1], int):
        return "body"
    return ".".join(str(p) for p in loc) or "body"


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field(e.get("loc", ())), "problem": e.get("msg", "invalid")}
        for e in exc.errors()
    ]
    return JSONResponse({"errors": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    """The database does not answer (down, restarting, unreachable): a 503 the client may
    retry, saying so, rather than a bare 500; nothing was written (each change is one
    transaction)."""
    log.warning("API %s %s: the database does not answer: %s", request.method,
                request.url.path, str(exc).splitlines()[0][:200])  # fmt: skip
    problem = "the database does not answer; nothing was changed: retry in a moment"
    body = {"errors": [{"field": None, "problem": problem}]}
    return JSONResponse(body, status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": "5"})  # fmt: skip


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = {"errors": [{"field": None, "problem": str(exc.detail)}]}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
