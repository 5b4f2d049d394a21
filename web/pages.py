"""The pages people use: log-in (``/``), the agent desktop (``/agent``) and the supervisor
wallboard (``/wallboard``), served by the same process as the API they call.

The pages are plain HTML, CSS and JavaScript modules in ``web/static/`` (no build step, no
third-party front-end code, nothing fetched from elsewhere: they work on a machine without
internet). They authenticate as any API client does: the log-in page gets a bearer token
from ``POST /api/v1/session`` and keeps it in the tab's ``sessionStorage``; every request
sends it in ``Authorization`` and every WebSocket as its first message. No cookie is ever
set, so no request is authenticated by the browser on its own and there is nothing for a
cross-site request to forge (CSRF needs ambient credentials). What the token could be
stolen by is injected script, hence the Content-Security-Policy below: scripts only from
this origin, none inline, and the pages put every text a customer or agent typed into the
DOM as text, never as markup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["PAGES", "STATIC", "add_pages"]

STATIC = Path(__file__).parent / "static"

#: Path -> page file.
PAGES = {"/": "login.html", "/agent": "agent.html", "/wallboard": "wallboard.html"}

#: The pages' policy: everything from this origin only (fetch and WebSockets included),
#: no inline script or style, no framing, no plugins.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)

_EVERYWHERE = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_pages(app: FastAPI) -> None:
    """Serve the pages and their files from ``app``, with the security headers."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for path, name in PAGES.items():
        app.add_api_route(path, _page(STATIC / name), include_in_schema=False)

    @app.middleware("http")
    async def secured(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(_EVERYWHERE)
        path = request.url.path
        # The API's own docs page (Swagger UI) runs an inline script: it keeps its own.
        if path in PAGES or path.startswith("/static/"):
            response.headers["Content-Security-Policy"] = PAGE_POLICY
            response.headers["X-Frame-Options"] = "DENY"
            # Pages and modules change with the version: never a stale script after an update.
            response.headers["Cache-Control"] = "no-cache"
        return response


def _page(file: Path) -> Callable[[], Awaitable[FileResponse]]:
    async def page() -> FileResponse:
        return FileResponse(file, media_type="text/html; charset=utf-8")

    return page
