"""Start-up with ``acd.state: redis`` (issue 12, item 9): a Redis URL that is not one, or a
Redis that does not answer, stops ``callcenter`` with one clear error naming the setting and
the fix, exit status 2, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from callcenter.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
QUEUES = str(ROOT / "config" / "queues.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://u:pw@127.0.0.1:6379/0", "(scheme 'http')"),
        ("u:pw@127.0.0.1:6379", "(no scheme)"),
        ("pw", "(no scheme)"),
    ],
)
def test_a_url_that_is_not_a_redis_url_is_refused_with_the_setting(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"CALLCENTER_REDIS__URL": url})
    message = str(err.value)
    assert "CALLCENTER_REDIS__URL" in message and "'redis.url'" in message
    assert f"not a Redis URL {why}; use redis://host:6379/0" in message
    assert "pw" not in message  # a URL may hold a password


def test_redis_urls_of_every_scheme_are_accepted() -> None:
    for url in ("redis://:pw@h:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock", None):
        settings = load_settings(None, {"CALLCENTER_REDIS__URL": url or "null"})
        assert (settings.redis.url and settings.redis.url.get_secret_value()) == url


def test_shared_state_without_a_redis_url_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"redis\.url \(CALLCENTER_REDIS__URL\)"):
        load_settings(None, {"CALLCENTER_ACD__STATE": "redis", "CALLCENTER_ACD__QUEUES": QUEUES})


def _callcenter(tmp_path: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")},
        "CALLCENTER_ACD__STATE": "redis",
        "CALLCENTER_ACD__QUEUES": QUEUES,
        "CALLCENTER_REDIS__URL": redis_url,
        "CALLCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'cc.sqlite3'}",
        "CALLCENTER_AMI__PORT": str(_free_port()),
        "CALLCENTER_HTTP__PORT": "0",  # the agent API on any free port
    }
    return subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "run", "--duration", "5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_callcenter_run_with_redis_down_says_which_setting_and_exits(tmp_path: Path) -> None:
    port = _free_port()  # nobody listens there
    done = _callcenter(tmp_path, f"redis://:secret@127.0.0.1:{port}/0")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    [error] = [line for line in done.stderr.splitlines() if line.startswith("callcenter:")]
    assert f"redis at 127.0.0.1:{port}: unreachable (ConnectionError" in error
    assert "'redis.url' (CALLCENTER_REDIS__URL)" in error and "redis-server is up" in error
    assert "secret" not in done.stderr


def test_callcenter_run_with_a_wrong_scheme_says_which_setting_and_exits(
    tmp_path: Path,
) -> None:
    done = _callcenter(tmp_path, "http://127.0.0.1:6379/0")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "CALLCENTER_REDIS__URL: key 'redis.url': Value error, not a Redis URL" in done.stderr
