"""The ACD's door (issue 13): :class:`acd.service.AcdService` is built from the ACD's own
settings and a few shared things (reactor, AMI action sender, caller-channel look-up, SQL
engine) without the process (``callcenter``), raises its own start-up errors, and the
process turns those into its :class:`~callcenter.settings.ConfigError` naming its keys."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, select
from twisted.internet.defer import Deferred, succeed

from acd.config import AcdHistorySettings, AcdServiceSettings
from acd.errors import AcdConfigError, AcdStartupError, StateStoreError
from acd.history import acd_events
from acd.history import metadata as acd_metadata
from acd.service import AcdService
from acd.state import MemoryState
from cti.ami.codec import Message
from cti.calls.events import CallParked, OriginateOutcome

ROOT = Path(__file__).resolve().parent.parent
QUEUES = {
    "agent_interface": "Local/{agent}@agents",
    "queues": {"sales": {"lanes": ["external"], "ring_timeout": 30}},
    "agents": {"6001": {"name": "Alice", "queues": {"sales": 0}}},
}
T0 = 1_800_000_000.0


def test_the_acd_does_not_import_the_process() -> None:
    """Every module of ``acd`` imports without ``callcenter`` (nor the later domains)."""
    code = (
        "import pkgutil, importlib, sys, acd\n"
        "for m in pkgutil.iter_modules(acd.__path__):\n"
        "    importlib.import_module('acd.' + m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('callcenter', 'ivr', 'tickets'))\n"
        "assert not bad, bad\n"
        "assert 'acd.service' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


class FakeAmi:
    """An AMI action sender: records actions, answers each with success."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    def send_action(
        self, name: str, fields: Any = (), *, timeout: float | None = None
    ) -> Deferred[Message]:
        self.sent.append((name, dict(fields)))
        return succeed(Message([("Response", "Success"), ("ActionID", f"id{len(self.sent)}")]))

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


def _settings(tmp_path: Path, **overrides: Any) -> AcdServiceSettings:
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump(QUEUES), encoding="utf-8")
    return AcdServiceSettings(
        queues=queues,
        pbx="lab",
        login_agents=True,
        history=AcdHistorySettings(spool_dir=tmp_path / "spool", sync_interval=None),
        **overrides,
    )


def test_a_service_on_memory_state_routes_a_parked_caller_and_records_it(
    tmp_path: Path, reactor: Any, run: Any
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'acd.sqlite3'}")
    acd_metadata.create_all(engine)
    ami = FakeAmi()
    channels = {"c1": "Local/5003@inbound-00000001;2", "c2": "Local/5003@inbound-00000002;2"}
    state = MemoryState()
    acd = AcdService(
        _settings(tmp_path),
        reactor=reactor,
        ami=ami,
        caller_channel=channels.get,
        engine=engine,
        state=state,
    )
    assert acd.state is state and acd.poll is None  # memory: no shared poll
    seen: list[Any] = []
    acd.events.subscribe(seen.append, name="test")
    acd.start()
    assert acd.restore_open(T0) == 0  # nothing left open by an earlier run
    acd.on_resync()  # the first snapshot is in: agents log in (login_agents)
    acd.on_resync()  # ... once
    assert acd.router.available("sales") == ["6001"]

    acd.on_call_event(CallParked("c1", T0, "external", channels["c1"]))
    acd.on_call_event(CallParked("c2", T0 + 1, "external", channels["c2"]))
    originate = [fields for name, fields in ami.sent if name == "Originate"]
    assert [f["Channel"] for f in originate] == ["Local/6001@agents"]
    # Each caller is told its position (and estimated wait, once there is one).
    told = {(f["Channel"], f["Variable"]): f["Value"] for n, f in ami.sent if n == "Setvar"}
    assert told[(channels["c1"], "CTI_POSITION")] == "1"
    assert told[(channels["c2"], "CTI_POSITION")] == "1"  # c1 is ringing, not waiting

    leg_id = originate[0]["ChannelId"]
    # The call model's reading of the OriginateResponse: the leg answered.
    acd.on_call_event(
        OriginateOutcome(T0 + 1.5, leg_id, "Local/6001@agents-00000009;1", True, "answered")
    )
    assert ("Bridge", {"Channel1": channels["c1"], "Channel2": "Local/6001@agents-00000009;1",
                       "Tone": "no"}) in ami.sent  # fmt: skip
    kinds = [e.kind for e in seen]
    assert kinds[:2] == ["agent_state", "caller_joined"]
    assert "caller_offered" in kinds and "caller_connected" in kinds
    [sales] = acd.snapshot(T0 + 2)
    assert (sales.queue, sales.calls_waiting, sales.agents_busy) == ("sales", 1, 1)

    acd.stop()
    closed = run(acd.close())
    assert closed.all_kept
    with engine.connect() as conn:
        stored = [r.kind for r in conn.execute(select(acd_events.c.kind, acd_events.c.pbx))]
        pbxs = {r.pbx for r in conn.execute(select(acd_events.c.pbx))}
    assert stored == kinds and pbxs == {"lab"}
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_down_at_start_is_the_acds_own_error_naming_its_setting(
    tmp_path: Path, reactor: Any
) -> None:
    from callcenter.app import acd_config_error

    port = _free_port()  # nobody listens there
    settings = _settings(
        tmp_path, state="redis", redis_url=f"redis://:hidden@127.0.0.1:{port}/0"
    )
    with pytest.raises(StateStoreError) as err:
        AcdService(
            settings,
            reactor=reactor,
            ami=FakeAmi(),
            caller_channel=lambda call_id: None,
            engine=create_engine("sqlite://"),
        )
    exc = err.value
    assert exc.setting == "redis_url" and isinstance(exc, AcdStartupError)
    assert f"redis at 127.0.0.1:{port}: unreachable (ConnectionError" in str(exc)
    assert "the ACD setting 'redis_url'" in str(exc) and "hidden" not in str(exc)
    # The process names its own key and variable instead.
    message = str(acd_config_error(exc))
    assert "check key 'redis.url' (CALLCENTER_REDIS__URL) and that redis-server is up" in message
    assert "redis_url" not in message


def test_a_missing_queues_file_names_the_file_and_the_process_key(tmp_path: Path) -> None:
    from acd.config import load_acd_config
    from callcenter.app import acd_config_error

    with pytest.raises(AcdConfigError) as err:
        load_acd_config(tmp_path / "nope.yaml")
    assert "nope.yaml: cannot read the ACD configuration file" in str(err.value)
    assert "key 'acd.queues' (CALLCENTER_ACD__QUEUES)" in str(acd_config_error(err.value))


def test_shared_state_needs_a_url() -> None:
    with pytest.raises(ValueError, match="state 'redis' needs redis_url"):
        AcdServiceSettings(queues=Path("q.yaml"), state="redis")
