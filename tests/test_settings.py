"""Configuration: defaults, files, environment overrides, and errors that say how to fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from callcenter.settings import (
    ConfigError,
    Settings,
    load_settings,
    require_production_secrets,
)

ROOT = Path(__file__).resolve().parent.parent


def _differences(a: object, b: object, path: str = "") -> set[str]:
    if isinstance(a, BaseModel) and type(a) is type(b):
        fields = type(a).model_fields
        return set().union(
            *(_differences(getattr(a, f), getattr(b, f), f"{path}{f}.") for f in fields)
        )
    return set() if a == b else {path.rstrip(".")}


def test_shipped_files_are_valid_and_differ_from_built_ins_only_where_documented() -> None:
    shipped = load_settings(ROOT / "config/callcenter.yaml", {})
    assert shipped.simulator.traffic.customers == ROOT / "config" / "demo-customers.csv"
    assert shipped.simulator.traffic.customers.is_file()
    assert shipped.acd.queues == ROOT / "config" / "queues.yaml"
    assert shipped.tickets == ROOT / "config" / "tickets.yaml"  # the default, beside the file
    # The demo file turns on the ACD for the simulator's parked callers; all else is default.
    assert _differences(shipped, Settings()) == {
        "simulator.traffic.customers",
        "simulator.traffic.dids",
        "acd.queues",
        "acd.login_agents",
        "tickets",  # resolved beside the file: the built-in is "tickets.yaml" unresolved
    }
    prod = load_settings(ROOT / "config/production.example.yaml", {})
    assert prod.database.migrate_on_start is False
    assert prod.acd.state == "redis" and prod.redis.url is not None


def test_environment_overrides_file_and_nests_with_double_underscore(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ami:\n  port: 5039\n  secret: from-file\n")
    s = load_settings(
        cfg,
        {
            "CALLCENTER_AMI__SECRET": "from-env",
            "CALLCENTER_AMI__RECONNECT__MAX_DELAY": "5",
            "CALLCENTER_REDIS__URL": "redis://127.0.0.1:6379/0",
            "CALLCENTER_LOG_LEVEL": "DEBUG",
            "CALLCENTER_CAPTURES": "/elsewhere",  # not a setting: ignored
        },
    )
    assert s.ami.port == 5039
    assert s.ami.secret.get_secret_value() == "from-env"
    assert s.ami.reconnect.max_delay == 5.0
    assert s.redis.url is not None and s.log_level == "DEBUG"


def test_config_file_from_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("http:\n  port: 9000\n")
    assert load_settings(None, {"CALLCENTER_CONFIG": str(cfg)}).http.port == 9000


def test_secrets_never_show(tmp_path: Path) -> None:
    s = load_settings(
        None,
        {
            "CALLCENTER_AMI__SECRET": "hunter2",
            "CALLCENTER_DATABASE__URL": "postgresql+psycopg://cc:pw-123@db/cc",
        },
    )
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert "pw-123" not in repr(s) and "pw-123" not in s.database.display_url()
    assert s.database.display_url() == "postgresql+psycopg://cc:***@db/cc"
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"CALLCENTER_DATABASE__URL": "mysql://cc:pw-123@db/cc"})
    assert "pw-123" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("ami:\n  port: 70000\n", {}, "c.yaml: key 'ami.port': Input should be less than"),
        ("ami:\n  prot: 5038\n", {}, "key 'ami.prot' is not a setting; remove it"),
        ("ami:\n  auth: sha1\n", {}, "key 'ami.auth': Input should be 'md5' or 'plain'"),
        ("ami: [1, 2\n", {}, "c.yaml: line 2, column 1: not valid YAML"),
        ("- just a list\n", {}, "top level must be a mapping"),
        (
            "",
            {"CALLCENTER_AMI__PING_INTERVAL": "soon"},
            "environment variable CALLCENTER_AMI__PING_INTERVAL: key 'ami.ping_interval'",
        ),
        ("", {"CALLCENTER_DATABASE__URL": "nonsense"}, "not a database URL; use sqlite:///"),
        ("ami: 5\n", {"CALLCENTER_AMI__PORT": "1"}, "'ami' is not a section"),
        (
            "",
            {"CALLCENTER_DATABSE__URL": "x"},
            "CALLCENTER_DATABSE__URL: 'databse' is not a section",
        ),
        ("", {"CALLCENTER_AMI__FILTERS": "[oops"}, "not a JSON list"),
        (
            "ami:\n  reconnect: {min_delay: 50, max_delay: 10}\n",
            {},
            "c.yaml: key 'ami.reconnect': Value error, min_delay (50.0) is above max_delay",
        ),
    ],
)
def test_errors_name_file_key_and_fix(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env)
    assert expected in str(err.value)


def test_lists_come_from_the_environment_as_json() -> None:
    s = load_settings(
        None,
        {
            "CALLCENTER_AMI__FILTERS": '["!Event: RTCP*", "!Event: VarSet"]',
            "CALLCENTER_NUMBERING__INTERNATIONAL_PREFIXES": '["00"]',
        },
    )
    assert s.ami.filters == ("!Event: RTCP*", "!Event: VarSet")
    assert s.numbering.international_prefixes == ("00",)


def test_the_demo_secret_is_refused_for_a_remote_pbx() -> None:
    require_production_secrets(load_settings(None, {}))  # loopback demo: fine
    remote = load_settings(None, {"CALLCENTER_AMI__HOST": "10.0.0.10"})
    with pytest.raises(ConfigError, match="set CALLCENTER_AMI__SECRET"):
        require_production_secrets(remote)
    require_production_secrets(
        load_settings(None, {"CALLCENTER_AMI__HOST": "10.0.0.10", "CALLCENTER_AMI__SECRET": "s"})
    )


def test_an_unreachable_database_is_a_clear_start_up_error() -> None:
    from callcenter.app import open_database

    settings = load_settings(
        None, {"CALLCENTER_DATABASE__URL": "postgresql+psycopg://cc:pw-9@127.0.0.1:1/cc"}
    )
    with pytest.raises(ConfigError) as err:
        open_database(settings)
    text = str(err.value)
    assert "postgresql+psycopg://cc:***@127.0.0.1:1/cc" in text and "pw-9" not in text
    assert "check key 'database.url' (CALLCENTER_DATABASE__URL)" in text


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load_settings(tmp_path / "nope.yaml", {})


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("localhost", True),
        ("LocalHost.", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("127.example.com", False),  # a name that merely starts with "127."
        ("127.0.0.1.nip.io", False),
        ("localhost.example.com", False),
        ("10.0.0.10", False),
        ("pbx", False),  # nothing is resolved: a name other than localhost is not local
    ],
)
def test_the_demo_secret_check_parses_the_address_instead_of_matching_text(
    host: str, local: bool
) -> None:
    settings = load_settings(None, {"CALLCENTER_AMI__HOST": host})
    if local:
        require_production_secrets(settings)
    else:
        with pytest.raises(ConfigError, match=f"demo secret for AMI host {re.escape(host)};"):
            require_production_secrets(settings)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            "",
            {"CALLCENTER_AMI__USERNAME": "cti\r\nAction: Originate"},
            "environment variable CALLCENTER_AMI__USERNAME: key 'ami.username': contains a line "
            "break (CR or LF)",
        ),
        (
            "",
            {"CALLCENTER_AMI__SECRET": "s3cret\n"},
            "environment variable CALLCENTER_AMI__SECRET: key 'ami.secret': contains a line break",
        ),
        (
            "",
            {"CALLCENTER_AMI__FILTERS": '["!Event: RTCP*\\r\\nAction: Logoff"]'},
            "CALLCENTER_AMI__FILTERS: key 'ami.filters': contains a line break",
        ),
        (
            'ami:\n  host: "pbx\\nforged"\n',
            {},
            "c.yaml: key 'ami.host': contains a line break (CR or LF)",
        ),
        ("ami:\n  secret: |\n    two\n    lines\n", {}, "c.yaml: key 'ami.secret': contains"),
        ('ami:\n  events: "call\\x1b[0m"\n', {}, "key 'ami.events': contains a control character"),
    ],
)
def test_a_line_break_in_a_setting_is_refused_naming_the_key(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env)
    assert expected in str(err.value)
    assert "s3cret" not in str(err.value) and "lines" not in str(err.value)


def test_a_duplicate_key_or_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ami:\n  port: 5039\n  username: cti\n  port: 5040\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: line 4, column 3: duplicate key 'port' "):
        load_settings(cfg, {})
    cfg.write_bytes("ami:\n  username: José\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"c\.yaml: line 2: not UTF-8 text"):
        load_settings(cfg, {})


def test_bad_settings_stop_the_command_without_a_traceback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("ami:\n  port: 5039\nami:\n  host: pbx\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
    proc = subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "--config", str(cfg), "run"],
        cwd=tmp_path,
        env={**env, "CALLCENTER_AMI__SECRET": "a\nb"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "c.yaml: line 3, column 1: duplicate key 'ami' (first given on line 1)" in proc.stderr
