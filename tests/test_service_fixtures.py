"""The private-server fixtures of ``conftest.py``: each starts, stops (its port then refuses
connections) and starts again on the same port, as the fault tests need."""

from __future__ import annotations

import socket

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.conftest import PostgresServer, RedisServer


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_redis_server_stops_and_restarts_empty(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.set("k", "v")
    assert client.get("k") == b"v"

    redis_server.stop()
    assert refuses(redis_server.port)
    with pytest.raises(redis.ConnectionError):
        client.get("k")

    redis_server.start()
    assert redis_server.url.endswith(f":{redis_server.port}/0")
    assert client.get("k") is None  # no persistence: a restart is an empty server
    client.close()


def test_postgres_server_stops_and_restarts_with_its_data(
    postgres_server: PostgresServer,
) -> None:
    engine = create_engine(postgres_server.url, pool_pre_ping=True)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x int)"))
        conn.execute(text("INSERT INTO t VALUES (7)"))

    postgres_server.stop()
    assert refuses(postgres_server.port)
    engine.dispose()

    postgres_server.start()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar_one() == 7
    engine.dispose()
