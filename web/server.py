"""Serve the API with uvicorn on the loop that is already running: the asyncio loop Twisted's
reactor runs on (``twisted.internet.asyncioreactor``). No thread, no second loop: the
telephony and the HTTP share one event loop, and endpoints that do blocking work run on
FastAPI's thread pool.

uvicorn's ``Server.serve`` is not used: it would capture the process's signals (Twisted
owns SIGINT and SIGTERM here) and turn a port already taken into ``sys.exit``. Instead the
socket is bound here (a taken port is a :class:`ListenError` at once), then uvicorn's own
start-up, tick loop (the Date header) and shutdown run on the reactor's loop.

No access log: a WebSocket's token may travel in its URL, and secrets never go to logs.
uvicorn's own messages go through ``logging`` (logger ``uvicorn.error``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import uvicorn
from twisted.internet.defer import Deferred

__all__ = ["ApiServer", "ListenError"]

log = logging.getLogger(__name__)

#: Seconds open connections (a WebSocket, a slow request) get to finish at stop.
GRACEFUL_SHUTDOWN = 5.0


class ListenError(Exception):
    """The API cannot listen on the address asked (port taken, address not local...)."""


class ApiServer:
    """One ASGI application served on ``reactor``'s asyncio loop."""

    def __init__(self, app: Any, *, reactor: Any) -> None:
        self.app = app
        self.reactor = reactor
        self.loop: asyncio.AbstractEventLoop = reactor._asyncioEventloop
        self.server: uvicorn.Server | None = None
        self.host: str | None = None
        #: The bound port, once :meth:`start` returned (the one picked when asked for 0).
        self.port: int | None = None
        self._socket: socket.socket | None = None
        self._ticks: asyncio.Task[None] | None = None

    def start(self, host: str, port: int) -> Deferred[int]:
        """Bind ``host:port`` now (:class:`ListenError` if it cannot), then serve; the
        Deferred fires with the bound port once requests are answered."""
        if self.server is not None:
            raise RuntimeError("the API server is already started")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family)
        except OSError as exc:
            # create_server's strerror repeats the address: the errno's text says it all.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ListenError(f"the API cannot listen on {host}:{port} ({reason})") from None
        sock.setblocking(False)
        self._socket, self.host, self.port = sock, host, sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN),
            # Pops are small JSON frames: compressing each costs more CPU than it saves.
            ws_per_message_deflate=False,
        )
        config.load()
        self.server = uvicorn.Server(config)
        self.server.lifespan = config.lifespan_class(config)
        return Deferred.fromFuture(asyncio.ensure_future(self._serve(), loop=self.loop))

    async def _serve(self) -> int:
        assert self.server is not None and self._socket is not None and self.port is not None
        await self.server.startup(sockets=[self._socket])
        # The tick loop keeps the Date header current and ends when should_exit is set.
        self._ticks = asyncio.ensure_future(self.server.main_loop())
        log.info("API: serving on http://%s:%d/api (docs: /api/docs)", self.host, self.port)
        return self.port

    def stop(self) -> Deferred[None]:
        """Stop accepting, let open requests finish (up to a few seconds), close."""
        return Deferred.fromFuture(asyncio.ensure_future(self._stop(), loop=self.loop))

    async def _stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.should_exit = True
        if self._ticks is not None:
            await self._ticks
            self._ticks = None
        if server.started:
            await server.shutdown(sockets=[self._socket] if self._socket else None)
        elif self._socket is not None:
            self._socket.close()
        self._socket = None
        log.info("API: stopped")
