"""Shared fixtures.

Twisted runs on the asyncio reactor here, as in the app (``callcenter.app``): it is installed
once, before anything imports ``twisted.internet.reactor``, and tests that need real sockets
or threads drive it through the ``run`` fixture, which runs the loop until a Deferred (or a
coroutine) completes or a timeout expires. Pure-core tests need none of this.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
from twisted.internet import asyncioreactor

_loop = asyncio.new_event_loop()
asyncio.set_event_loop(_loop)
asyncioreactor.install(_loop)

from twisted.internet import reactor as _reactor  # noqa: E402  (must follow install())
from twisted.internet.defer import Deferred, ensureDeferred  # noqa: E402

assert isinstance(_reactor, asyncioreactor.AsyncioSelectorReactor)
_reactor.startRunning(installSignalHandlers=False)

T = TypeVar("T")


def run_until(awaitable: Deferred[T] | Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    """Run the reactor until ``awaitable`` completes; fail the test after ``timeout`` s."""
    d = ensureDeferred(awaitable) if not isinstance(awaitable, Deferred) else awaitable
    return _loop.run_until_complete(asyncio.wait_for(d.asFuture(_loop), timeout))


def sleep(seconds: float) -> Deferred[None]:
    """A Deferred that fires after ``seconds`` of real time on the running reactor."""
    d: Deferred[None] = Deferred()
    _reactor.callLater(seconds, d.callback, None)
    return d


@pytest.fixture
def reactor() -> Any:
    """The global asyncio-backed reactor (real sockets, real time)."""
    return _reactor


@pytest.fixture
def run() -> Callable[..., Any]:
    """``run(deferred_or_coroutine, timeout=10)`` -> its result, with the reactor running."""
    return run_until


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the reactor's thread pool and close the loop, so the process can exit."""
    # The shutdown triggers stop the reactor's thread pool; the loop is not run again.
    _reactor.fireSystemEvent("shutdown")


def _unavailable(message: str) -> NoReturn:
    """Skip the test; under CI (``CI`` set) a missing service is a failure instead."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _service_url(variable: str, what: str) -> str:
    """A real service's URL from the environment; under CI its absence is a failure."""
    url = os.environ.get(variable)
    if not url:
        _unavailable(f"{what} not configured: set {variable} (.ci/services.sh starts one)")
    return url


@pytest.fixture
def postgres_url() -> str:
    """A real, empty PostgreSQL database (its public schema is dropped and re-created)."""
    from sqlalchemy import create_engine, text

    url = _service_url("CALLCENTER_TEST_POSTGRES_URL", "PostgreSQL")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind the product runs on: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Any]:
    """An engine on ``database_url`` with every migration applied (disposed after)."""
    from sqlalchemy import create_engine

    import migrations

    migrations.upgrade(database_url)
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_url() -> str:
    """A real redis-server (database flushed)."""
    import redis

    url = _service_url("CALLCENTER_TEST_REDIS_URL", "redis-server")
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


# --- Private, throwaway servers for fault tests (stop one mid-test, start it again) ---------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no log)"


class RedisServer:
    """A redis-server of our own on 127.0.0.1:``port``, no persistence: empty at each start."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.dir, self.port = binary, directory, _free_port()
        self.log = directory / "redis.log"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start on the same port; fail the test, with the server's log, if it does not answer."""
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--save", "", "--appendonly", "no", "--logfile", str(self.log)]
        self.process = subprocess.Popen([self.binary, *args], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        status = self.process.poll()
        self.stop()
        what = "timed out" if status is None else f"exit status {status}"
        pytest.fail(f"redis-server not up on port {self.port} ({what}):\n{_log(self.log)}")

    def stop(self) -> None:
        """Stop the server (idempotent); its port then refuses connections."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port, stopped at teardown (``.stop()``, ``.start()``)."""
    binary = os.environ.get("CALLCENTER_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        _unavailable("redis-server not found: install it or set CALLCENTER_TEST_REDIS_SERVER")
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PostgresServer:
    """A PostgreSQL cluster of our own (trust auth, 127.0.0.1:``port``); its data survive
    ``stop()`` / ``start()``, which run ``pg_ctl`` on its data directory only."""

    def __init__(self, bin_dir: Path, directory: Path) -> None:
        self.bin, self.dir, self.port = bin_dir, directory, _free_port()
        self.data, self.log = directory / "data", directory / "postgres.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        # PostgreSQL refuses to run as root: then its commands run as the postgres user.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, what: str, *args: str, timeout: float = 60.0) -> None:
        argv = [*self.prefix, str(self.bin / args[0]), *args[1:]]
        done = subprocess.run(argv, cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            pytest.fail(f"{what} failed:\n{done.stdout}{done.stderr}\n{_log(self.log)}")

    def init(self) -> None:
        args = ["-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        self._run("initdb", "initdb", *args, "--locale=C.UTF-8", "--no-sync")

    def start(self, timeout: int = 30) -> None:
        """Start on the same data directory and port; fail, with its log, if it is not up."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        args = ["-D", str(self.data), "-l", str(self.log), "-w", "-t", str(timeout), "-o", options]
        self._run("pg_ctl start", "pg_ctl", "start", *args, timeout=timeout + 30)

    def stop(self) -> None:
        """Stop the server (idempotent); its port then refuses connections."""
        # The pid file also covers a start that timed out with the server still coming up.
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl stop", "pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")


def _postgres_bin() -> Path | None:
    """The bin directory of the newest PostgreSQL under /usr/lib/postgresql with initdb."""
    found = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    versions = sorted(found, key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()])
    return versions[-1].parent if versions else None


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster on a free port, removed at teardown (``.stop()``,
    ``.start()``). Its directory is not under pytest's ``tmp_path``, whose parents only
    root may enter, because as root the server runs as the postgres user."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        _unavailable("PostgreSQL not found: no /usr/lib/postgresql/*/bin/initdb")
    if os.geteuid() == 0 and not (shutil.which("runuser") and _has_user("postgres")):
        _unavailable("as root, PostgreSQL needs runuser and a postgres user")
    directory = Path(tempfile.mkdtemp(prefix="callcenter-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        server = PostgresServer(bin_dir, directory)
        server.init()
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
