"""``callcenter asterisk dialplan``: the generated extensions.conf, read back with the
product's own .conf reader, has every context and extension the ACD sends channels to and
the lab's holding lanes, as the real lab (tests/captures/conf) and the simulator run them.
Structure is asserted, not a stored text."""

from __future__ import annotations

from pathlib import Path

import pytest

from acd.config import parse_acd_config
from acd.dialplan import DialplanError, DialplanOptions, acd_dialplan, render
from acd.driver import Dialplan as AcdTargets
from callcenter.asterisk import generate_dialplan
from callcenter.cli import main
from callcenter.settings import Settings, load_settings
from cti.asterisk_conf import read_conf
from ivr.dialplan import IvrEntry, ivr_entry_dialplan
from pbx_simulator.dialplan import lab_dialplan
from pbx_simulator.settings import Settings as LabSettings

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config/callcenter.yaml"
LAB_CONF = ROOT / "tests/captures/conf/extensions.conf"

Plan = dict[str, dict[str, list[tuple[str, str, str | None]]]]


def parse(path: Path) -> Plan:
    """``{context: {exten: [(app, data, label)]}}`` from an extensions.conf."""
    plan: Plan = {}
    for section in read_conf(path).concrete():
        extens = plan.setdefault(section.name, {})
        current: list[tuple[str, str, str | None]] | None = None
        for entry in section.resolved():
            if entry.key not in ("exten", "same"):
                continue
            parts = entry.value.split(",", 2 if entry.key == "exten" else 1)
            priority, app = (parts[1], parts[2]) if entry.key == "exten" else (parts[0], parts[1])
            if entry.key == "exten":
                current = extens.setdefault(parts[0].strip(), [])
            assert current is not None, f"{entry.where}: 'same' before any 'exten'"
            label = priority.strip().partition("(")[2].rstrip(")") or None
            name, _, data = app.partition("(")
            current.append((name.strip(), data.removesuffix(")"), label))
    return plan


def generated(tmp_path: Path, text: str) -> Plan:
    out = tmp_path / "extensions.conf"
    out.write_text(text, encoding="utf-8")
    return parse(out)


def apps(steps: list[tuple[str, str, str | None]]) -> list[str]:
    return [app.lower() for app, _, _ in steps if app != "NoOp"]


def parked_lanes(plan: Plan) -> dict[str, tuple[str, str]]:
    """Lane -> the (context, exten) that parks callers in it without a callback offer."""
    lanes: dict[str, tuple[str, str]] = {}
    for context, extens in plan.items():
        for exten, steps in extens.items():
            for app, data, _ in steps:
                if app == "UserEvent" and data.startswith("CtiParked,"):
                    lane = data.split("Queue: ", 1)[1].split(",", 1)[0]
                    if not any(a == "WaitExten" for a, _, _ in steps):
                        lanes.setdefault(lane, (context, exten))
    return lanes


def settings_with(tmp_path: Path, queues_yaml: str, extra: str = "") -> Settings:
    (tmp_path / "queues.yaml").write_text(queues_yaml, encoding="utf-8")
    (tmp_path / "callcenter.yaml").write_text(f"acd: {{queues: queues.yaml}}\n{extra}")
    return load_settings(tmp_path / "callcenter.yaml", environ={})


def test_every_context_the_acd_sends_channels_to_is_generated(tmp_path: Path) -> None:
    settings = load_settings(CONFIG, environ={})
    assert settings.acd.queues is not None
    from acd.config import load_acd_config

    config = load_acd_config(settings.acd.queues)
    plan = generated(tmp_path, generate_dialplan(settings).text)
    targets = AcdTargets()

    # Originate of an agent leg: the standby extension; of a callback: the outbound context
    # for E.164 and national numbers; Redirect of a callback overflow: the confirmation.
    assert apps(plan[targets.standby_context][targets.standby_exten])[0] == "wait"
    assert {"_X.", "_+X."} <= set(plan[targets.callback_context])
    assert "dial" in apps(plan[targets.callback_context]["_+X."])
    assert "playback" in apps(plan[targets.overflow_contexts["callback"]]["s"])
    # Every lane of every queue is parked by some extension; each DID reaches its lane.
    lanes = parked_lanes(plan)
    inbound = plan[settings.calls.inbound_contexts[0]]
    for queue in config.queues.values():
        for lane in queue.lanes:
            assert lane in lanes, f"no holding extension parks lane {lane}"
        for did in queue.dids:
            ((_, goto, _),) = inbound[f"did-{did}"]
            context, exten, _ = goto.split(",")
            assert (context, exten) == lanes[queue.lanes[0]]
    # The calls.holding entries the call model reads after a restart all exist as written.
    for context, extens in settings.calls.holding.items():
        for exten, lane in extens.items():
            assert lanes[lane] == (context, exten)
    # Agents rung through Local/<id>@agents: each id is an extension ringing its device.
    for agent in config.agents:
        assert plan["agents"][agent][1][:2] == ("Dial", f"PJSIP/{agent}")
    # Inbound: a call id the agent legs inherit, and the DID routing.
    assert ("Set", "__CTI_CALLID=${UNIQUEID}", None) in inbound["_X."]
    # No IVR entries given: no AGI anywhere.
    assert not any(a == "AGI" for e in plan.values() for s in e.values() for a, _, _ in s)


def test_holding_lanes_match_the_labs(tmp_path: Path) -> None:
    """The lab's lanes (conf/extensions.conf, and the simulator's holding-callback):
    Answer, the CtiParked UserEvent with the lane, then a wait loop, silent or with MOH."""
    lab = parse(LAB_CONF)
    simulated = lab_dialplan(LabSettings())
    settings = settings_with(
        tmp_path,
        "agent_interface: Local/{agent}@agents\n"
        "queues:\n  sales: {lanes: [external]}\n  support: {lanes: [external-moh]}\n",
        "calls:\n  holding:\n    holding: {s: external, moh: external-moh}\n"
        "    holding-callback: {s: external}\n",
    )
    result = generate_dialplan(settings, silent_lanes=frozenset({"external"}))
    plan = generated(tmp_path, result.text)
    # Only the generated callback offer of external-moh is missing from calls.holding.
    assert [n.split(";")[0] for n in result.notes] == [
        "calls.holding lacks holding-callback: {external-moh: external-moh}"
    ]
    for exten in ("s", "moh"):
        mine, theirs = plan["holding"][exten], lab["holding"][exten]
        assert [s for s in mine if s[0] != "NoOp"] == [s for s in theirs if s[0] != "NoOp"]
    assert apps(plan["holding"]["s"]) == ["answer", "userevent", "wait", "goto"]
    assert apps(plan["holding"]["moh"]) == ["answer", "userevent", "musiconhold", "goto"]
    # The callback offer parks like the simulator's, then a key press asks for a callback.
    offer = plan["holding-callback"]
    sim_offer = simulated["holding-callback"]
    mine_event = next(d for a, d, _ in offer["s"] if a == "UserEvent")
    sim_event = next(s.data for s in sim_offer["s"] if s.app == "UserEvent")
    assert mine_event == sim_event
    key = next(k for k in sim_offer if k != "s")
    assert offer[key][0][:2] == ("UserEvent", sim_offer[key][0].data)
    assert apps(offer[key])[-1] == "hangup"
    # Waiting for the key loops back on timeout and on a wrong key.
    assert offer["t"][0][:2] == offer["i"][0][:2] == ("Goto", "${CTI_HOLDING},loop")
    assert [a for a, _, _ in plan["agent-standby"]["s"]] == [
        a for a, _, _ in lab["agent-standby"]["s"]
    ]


def test_voicemail_targets_and_dids_only_queues(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path,
        "queues:\n"
        "  sales:\n    lanes: [external]\n    max_wait: 60\n"
        "    overflow: {kind: voicemail, target: '5003@default'}\n"
        "  support:\n    dids: ['5010']\n"
        "    overflow: {kind: callback, fallback: {kind: voicemail, target: '6000@default'}}\n"
        "    max_wait: 60\n",
    )
    result = generate_dialplan(settings)
    plan = generated(tmp_path, result.text)
    mailboxes = plan[AcdTargets().overflow_contexts["voicemail"]]
    assert set(mailboxes) == {"5003@default", "6000@default"}
    assert mailboxes["5003@default"][0][:2] == ("VoiceMail", "${EXTEN},u")
    # A queue with DIDs only parks its callers in a lane no queue reads: the DID decides.
    ((_, goto, _),) = plan["inbound"]["did-5010"]
    context, exten, _ = goto.split(",")
    assert parked_lanes(plan)["dialled"] == (context, exten)
    assert any("dialled" in note for note in result.notes)


def test_ivr_entries_over_asyncagi_and_fastagi(tmp_path: Path) -> None:
    settings = load_settings(CONFIG, environ={})
    entries = [IvrEntry("5001", "main", "asyncagi"), IvrEntry("5004", "billing", "fastagi")]
    text = generate_dialplan(settings, ivr_entries=entries, fastagi=("10.0.0.5", 4574)).text
    plan = generated(tmp_path, text)
    ivr = plan["ivr-entry"]
    assert ("AGI", "agi:async,main", None) in ivr["5001"]
    assert ("AGI", "agi://10.0.0.5:4574/billing", None) in ivr["5004"]
    assert apps(ivr["5001"]) == ["answer", "agi", "hangup"]
    for did in ("5001", "5004"):
        assert plan["inbound"][f"did-{did}"] == [("Goto", f"ivr-entry,{did},1", None)]
    assert ivr_entry_dialplan([]) == ([], {})


def test_conflicts_and_bad_names_are_refused() -> None:
    config = parse_acd_config({"queues": {"sales": {"lanes": ["external"], "dids": ["5001"]}}}, "t")
    contexts, routes = ivr_entry_dialplan([IvrEntry("5001", "main", "asyncagi")])
    with pytest.raises(DialplanError, match="DID 5001 is both a queue's"):
        acd_dialplan(config, DialplanOptions(), routes=routes, contexts=contexts)
    with pytest.raises(DialplanError, match="flow name 'a b'"):
        ivr_entry_dialplan([IvrEntry("5009", "a b", "fastagi")])
    with pytest.raises(DialplanError, match="given twice"):
        ivr_entry_dialplan([IvrEntry("5", "a", "fastagi"), IvrEntry("5", "b", "asyncagi")])
    taken = DialplanOptions(holding={"holding-callback": {"5": "external"}})
    with pytest.raises(DialplanError, match="taken by the callback key"):
        acd_dialplan(config, taken)


def test_render_escapes_semicolons(tmp_path: Path) -> None:
    config = parse_acd_config({"queues": {"q": {"lanes": ["l"]}}}, "t")
    options = DialplanOptions(holding={}, callback_offer_prompt="a;b")
    plan = generated(tmp_path, render(acd_dialplan(config, options)))
    assert ("Background", "a;b", "loop") in plan["holding-callback"]["l"]


def test_cli_prints_the_dialplan_and_notes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asterisk", "dialplan", "--config", str(CONFIG), "--silent", "external"]) == 0
    out, err = capsys.readouterr()
    assert "[holding]" in out and "exten => s,1,NoOp(parked in lane external:" in out
    assert " same => n(loop),Wait(300)" in out
    assert "note: calls.holding lacks holding-callback" in err


def test_cli_without_a_queues_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.yaml").write_text("acd: {queues: null}\n")
    assert main(["--config", str(tmp_path / "c.yaml"), "asterisk", "dialplan"]) == 2
    assert "key 'acd.queues' is not set" in capsys.readouterr().err
