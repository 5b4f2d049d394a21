"""``callcenter asterisk import-queues``: the lab's queues.conf and hand-made ones
(templates, strategies without an equivalent, includes, bad lines) become a queues.yaml the
ACD's own loader accepts, with every line not mapped reported with its file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from acd.asterisk_queues import QueuesImportError, import_queues
from acd.config import load_acd_config
from callcenter.cli import main
from cti.asterisk_conf import AsteriskConfError, read_conf

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "tests/captures/conf/queues.conf"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--config", str(ROOT / "config/callcenter.yaml"), "asterisk", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_labs_queues_conf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "queues.yaml"
    code, out, err = run(["import-queues", str(LAB), "-o", str(out_file)], capsys)
    assert code == 0 and out == ""
    config = load_acd_config(out_file)
    assert config.queues["sales"].strategy == "round_robin"  # rrmemory
    assert config.queues["support"].strategy == "ring_all"  # ringall
    assert config.queues["sales"].ring_timeout == 10  # timeout
    assert config.queues["sales"].wrap_up == 2  # wrapuptime
    assert config.queues["support"].retry == 1
    assert config.queues["desk"].lanes == ("desk",)
    # Members: Local/6001@agents... share the agent_interface; others keep their own.
    assert config.agent_interface == "Local/{agent}@agents"
    assert config.interface_of("6001") == "Local/6001@agents"
    assert config.interface_of("6101") == "Local/6101@agents-noanswer"
    assert config.interface_of("7001") == "Local/7001@agent-desk"
    assert config.agents["6003"].name == "Agent Carol"
    assert config.agents["6003"].queues == {"sales": 1}  # penalty 1
    # Reported with file:line: the [general] settings, music classes, queue variables.
    lines = LAB.read_text().splitlines()
    reported = [r for r in err.splitlines() if r.startswith("not mapped: ")]
    for number, line in enumerate(lines, start=1):
        if line.startswith(("musicclass", "setqueuevar", "persistentmembers")):
            assert any(f"queues.conf:{number}: " in r for r in reported), line
    assert not any("announce-frequency = 0" in r for r in reported)  # off: nothing to map
    assert "3 queues, 5 agents imported" in err


def test_templates_strategies_and_members(tmp_path: Path) -> None:
    conf = write(
        tmp_path,
        "queues.conf",
        "[general]\n"
        "[base](!)\n"
        "timeout = 12 ; seconds\n"
        "wrapuptime = 5\n"
        "servicelevel = 30\n"
        "autopause = yes\n"
        "member => PJSIP/alice,2,Alice\n"
        "[sales](base)\n"
        "strategy = leastrecent\n"
        "timeout = 8\n"  # overrides the template's
        "[lottery](base)\n"
        "strategy = wrandom\n"
        "maxlen = 5\n"
        "member => SIP/bob,,Bob,Custom:bob\n"
        "[few](!,base)\n"
        "strategy = fewestcalls\n"
        "[billing](few)\n"
        "note = a\\;b\n",
    )
    result = import_queues(read_conf(conf))
    data = result.data
    assert set(data["queues"]) == {"sales", "lottery", "billing"}  # templates not queues
    sales = data["queues"]["sales"]
    assert (sales["strategy"], sales["ring_timeout"], sales["wrap_up"]) == ("longest_idle", 8, 5)
    assert sales["service_level"] == {"seconds": 30}
    assert sales["auto_pause_after"] == 1
    assert data["queues"]["billing"]["strategy"] == "fewest_calls"  # through two templates
    assert "strategy" not in data["queues"]["lottery"]
    # The template's member is in every queue made from it; bob has his own interface.
    assert data["agents"]["alice"]["queues"] == {"sales": 2, "lottery": 2, "billing": 2}
    assert data["agent_interface"] == "PJSIP/{agent}"
    assert data["agents"]["bob"] == {
        "name": "Bob",
        "interface": "SIP/bob",
        "queues": {"lottery": 0},
    }
    text = {str(u) for u in result.unmapped}
    assert any(":12: [lottery] strategy = wrandom: strategy wrandom has no ACD" in t for t in text)
    assert any(":13: [lottery] maxlen = 5: " in t for t in text)
    assert any(":14: state_interface Custom:bob" in t for t in text)
    assert any(":18: [billing] note = a;b: no ACD equivalent" in t for t in text)  # \; kept
    yaml_file = write(tmp_path, "queues.yaml", result.yaml_text("queues.conf"))
    assert load_acd_config(yaml_file).queues["lottery"].strategy == "longest_idle"


@pytest.mark.parametrize("strategy", ["random", "linear", "wrandom", "rrordered"])
def test_strategies_without_an_equivalent_are_reported(tmp_path: Path, strategy: str) -> None:
    conf = write(tmp_path, "q.conf", f"[q]\nstrategy = {strategy}\n")
    (unmapped,) = import_queues(read_conf(conf)).unmapped
    assert unmapped.where.endswith("q.conf:2") and strategy in unmapped.reason


def test_includes_are_followed_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    write(tmp_path, "conf.d/support.conf", "[support]\nstrategy = ringall\n")
    write(tmp_path, "conf.d/sales.conf", "[sales]\nmember => PJSIP/6001\n")
    conf = write(tmp_path, "queues.conf", '#include "conf.d/*.conf"\n[sales](+)\ntimeout = 9\n')
    data = import_queues(read_conf(conf)).data
    assert data["queues"]["sales"]["ring_timeout"] == 9
    assert data["queues"]["support"]["strategy"] == "ring_all"
    assert data["agents"]["6001"] == {"name": "6001", "queues": {"sales": 0}}
    with pytest.raises(
        AsteriskConfError, match=r"queues.conf:1: #include conf.d/\*.conf: includes"
    ):
        read_conf(conf, follow_includes=False)
    loop = write(tmp_path, "loop.conf", "#include loop.conf\n")
    with pytest.raises(AsteriskConfError, match="includes itself"):
        read_conf(loop)


def test_members_file(tmp_path: Path) -> None:
    conf = write(tmp_path, "queues.conf", "[sales]\nstrategy = rrmemory\n")
    members = write(
        tmp_path,
        "members.conf",
        "[sales]\nmember => PJSIP/6002,3,Bob\nfoo = bar\n[nosuch]\nmember => PJSIP/6009\n",
    )
    result = import_queues(read_conf(conf), [read_conf(members)])
    assert result.data["agents"]["6002"]["queues"] == {"sales": 3}
    text = [str(u) for u in result.unmapped]
    assert any("members.conf:3: foo = bar: only member lines" in t for t in text)
    assert any("members.conf:5: member => PJSIP/6009: no queue [nosuch]" in t for t in text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[q]\nstrategy ringall\n", r"q.conf:2: 'strategy ringall' is not 'key = value'"),
        ("timeout = 5\n", r"q.conf:1: 'timeout' before any \[section\]"),
        ("[q\n", r"q.conf:1: not a section header"),
        ("[q](nosuch)\n", r"q.conf:1: \[q\] inherits from \[nosuch\], which is not defined"),
        ("[q]\n[q]\n", r"q.conf:2: section \[q\] again \(first at .*q.conf:1\)"),
        ("#exec /bin/true\n", r"q.conf:1: #exec runs a program"),
        ("#include nothere.conf\n", r"q.conf:1: #include nothere.conf: no such file"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AsteriskConfError, match=message):
        read_conf(write(tmp_path, "q.conf", text))


def test_bad_values_are_all_reported_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write(
        tmp_path,
        "queues.conf",
        "[q]\nstrategy = fastest\ntimeout = soon\nmember => 6001,0\nmember => PJSIP/1,high\n",
    )
    with pytest.raises(QueuesImportError) as caught:
        import_queues(read_conf(conf))
    problems = caught.value.problems
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in problems] == ["2", "3", "4", "5"]
    assert "unknown strategy 'fastest'" in problems[0]
    assert "penalty 'high'" in problems[3]
    out_file = tmp_path / "queues.yaml"
    code, out, err = run(["import-queues", str(conf), "-o", str(out_file)], capsys)
    assert code == 1 and not out_file.exists() and out == ""
    assert "nothing written" in err and "queues.conf:3" in err


def test_stdout_and_a_conf_the_acd_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write(tmp_path, "queues.conf", "[sales]\nstrategy = ringall\nmember => PJSIP/7,0,Z\n")
    code, out, _ = run(["import-queues", str(conf)], capsys)
    assert code == 0 and "strategy: ring_all" in out
    # A penalty app_queue takes but the ACD bounds (MAX_PENALTY): refused with its line.
    big = write(tmp_path, "big.conf", "[sales]\nmember => PJSIP/7,5000\n")
    code, _, err = run(["import-queues", str(big)], capsys)
    assert code == 1 and "big.conf:2" in err and "penalty '5000'" in err
