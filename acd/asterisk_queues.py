"""An app_queue configuration (``queues.conf``) as the ACD's queues file (``queues.yaml``).

:func:`import_queues` maps what has an equivalent and lists the rest as :class:`Unmapped`,
each with the file and line it came from, so nothing is dropped silently:

* each concrete section (templates are inherited, not imported) but ``[general]`` is a
  queue, fed by a holding lane of its own name (``lanes: [<name>]``, the lane
  ``callcenter asterisk dialplan`` parks its callers in);
* ``strategy``: ringall → ring_all, leastrecent → longest_idle, fewestcalls → fewest_calls,
  rrmemory → round_robin; random, linear, wrandom, rrordered have none (the queue keeps
  the ACD's default, longest_idle);
* ``timeout`` → ring_timeout, ``retry`` → retry, ``wrapuptime`` → wrap_up,
  ``servicelevel`` → service_level.seconds, ``autopause`` yes/no → auto_pause_after 1/0;
  ``maxlen`` needs an overflow target app_queue does not have (the dialplan after
  ``Queue()`` is), so it is reported; ``ringinuse = no`` is what the ACD always does;
* ``member => interface,penalty,name,state_interface`` → an agent (its id is the
  interface's resource: ``PJSIP/6001`` and ``Local/6001@agents`` are agent ``6001``) with
  the queue and penalty; the most common interface shape becomes ``agent_interface``
  (``Local/{agent}@agents``), other agents get their own ``interface``.

A value that is not what app_queue accepts (a penalty ``high``, a timeout ``-3``, a member
without an interface) is an error, not a note: :class:`QueuesImportError` lists them all,
with file and line, and nothing is produced.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from acd.config import MAX_PENALTY
from cti.asterisk_conf import AsteriskConf, ConfEntry, ConfSection

__all__ = [
    "STRATEGIES",
    "UNMAPPED_STRATEGIES",
    "QueuesImport",
    "QueuesImportError",
    "Unmapped",
    "import_queues",
]

#: app_queue strategies with an ACD equivalent.
STRATEGIES = {
    "ringall": "ring_all",
    "leastrecent": "longest_idle",
    "fewestcalls": "fewest_calls",
    "rrmemory": "round_robin",
}
#: app_queue strategies without one (reported; the queue keeps the ACD's default).
UNMAPPED_STRATEGIES = ("random", "linear", "wrandom", "rrordered")

_WHY_NOT: dict[str, str] = {
    "musicclass": "music on hold belongs to the holding lane: see callcenter asterisk dialplan",
    "weight": "the ACD has no weight between queues; use agents' penalties or caller tiers",
    "joinempty": "callers always join; use business hours or max_estimated_wait to refuse",
    "leavewhenempty": "callers stay while no agent is logged in; use max_wait with an overflow",
    "context": "exit digits while waiting are the holding dialplan's (callback offer)",
    "announce-position": "position is set on the channel as CTI_POSITION for the dialplan",
    "announce-holdtime": "the estimated wait is set on the channel as CTI_EWT for the dialplan",
}
#: Values that turn an app_queue feature off.
_OFF = ("", "0", "no", "false", "off")
_INTERFACE = re.compile(r"^(?P<tech>[A-Za-z0-9_-]+)/(?P<resource>[^@/,\s]+)(?P<rest>.*)$")


@dataclass(frozen=True, slots=True)
class Unmapped:
    """A line with no equivalent in the ACD, and why."""

    where: str
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}: {self.reason}"


class QueuesImportError(ValueError):
    """Values app_queue would not accept; ``problems`` each start with ``file:line``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("cannot import queues:\n  " + "\n  ".join(self.problems))


@dataclass(slots=True)
class QueuesImport:
    """The queues file's content (a mapping ``acd.config.parse_acd_config`` takes) and what
    could not be mapped, in file order."""

    data: dict[str, Any]
    unmapped: list[Unmapped] = field(default_factory=list)

    def yaml_text(self, source: str) -> str:
        """The mapping as ``queues.yaml`` text, headed by where it came from."""
        head = (
            f"# ACD queues and agents imported from {source} (callcenter asterisk import-queues).\n"
            "# Check the report of what was not mapped; see config/queues.yaml for every key.\n"
        )
        body = yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True, width=100)
        return head + body


@dataclass(slots=True)
class _Agent:
    interface: str
    name: str | None
    queues: dict[str, int] = field(default_factory=dict)


def import_queues(conf: AsteriskConf, members: Iterable[AsteriskConf] = ()) -> QueuesImport:
    """Map ``conf`` (``queues.conf``) and the ``member`` lines of ``members`` (files whose
    sections are named after its queues) to the ACD's queues file."""
    result = QueuesImport({})
    errors: list[str] = []
    queues: dict[str, dict[str, Any]] = {}
    member_lines: list[tuple[str, ConfEntry]] = []
    for section in conf.concrete():
        if section.name == "general":
            result.unmapped += [
                Unmapped(e.where, _shown(e), "app_queue [general] setting; no ACD equivalent")
                for e in section.resolved()
            ]
            continue
        queues[section.name] = _queue(section, result.unmapped, errors, member_lines)
    for extra in members:
        for section in extra.concrete():
            entries = [e for e in section.resolved() if e.key == "member"]
            if section.name not in queues:
                result.unmapped += [
                    Unmapped(e.where, _shown(e), f"no queue [{section.name}] in the queues file")
                    for e in entries
                ]
                continue
            member_lines += [(section.name, e) for e in entries]
            result.unmapped += [
                Unmapped(e.where, _shown(e), "only member lines are read from a members file")
                for e in section.resolved()
                if e.key != "member"
            ]
    agents = _agents(member_lines, result.unmapped, errors)
    if errors:
        raise QueuesImportError(errors)
    template = _agent_interface(agents)
    data: dict[str, Any] = {}
    if template is not None:
        data["agent_interface"] = template
    data["queues"] = queues
    if agents:
        data["agents"] = {
            agent_id: _agent_entry(agent_id, agent, template) for agent_id, agent in agents.items()
        }
    result.data = data
    result.unmapped.sort(key=lambda u: _order(u.where))
    return result


def _queue(
    section: ConfSection,
    unmapped: list[Unmapped],
    errors: list[str],
    members: list[tuple[str, ConfEntry]],
) -> dict[str, Any]:
    queue: dict[str, Any] = {"lanes": [section.name]}
    # A later line (own or inherited) overrides an earlier one, as in app_queue.
    for entry in section.resolved():
        key, value = entry.key.lower(), entry.value.strip()
        note = _queue_setting(queue, key, value)
        if key == "member":
            members.append((section.name, entry))
        elif isinstance(note, _Bad):
            errors.append(f"{entry.where}: [{section.name}] {_shown(entry)}: {note.problem}")
        elif note is not None:
            unmapped.append(Unmapped(entry.where, f"[{section.name}] {_shown(entry)}", note))
    return queue


@dataclass(frozen=True, slots=True)
class _Bad:
    problem: str


def _queue_setting(queue: dict[str, Any], key: str, value: str) -> str | _Bad | None:
    """Set ``key`` on ``queue``; a note when it has no equivalent, :class:`_Bad` when app_queue
    itself would refuse it."""
    if key == "member":
        return None
    if key == "strategy":
        strategy = value.lower()
        if strategy in STRATEGIES:
            queue["strategy"] = STRATEGIES[strategy]
            return None
        if strategy in UNMAPPED_STRATEGIES:
            return (
                f"strategy {strategy} has no ACD equivalent; the queue gets longest_idle "
                f"(choose one of {', '.join(sorted(set(STRATEGIES.values())))}, or "
                "skills_weighted)"
            )
        return _Bad(f"unknown strategy {value!r}")
    if key in ("timeout", "retry", "wrapuptime", "servicelevel", "maxlen"):
        seconds = _number(value)
        if seconds is None or seconds < 0:
            return _Bad("not a number of seconds (0 or more)")
        if key == "timeout":
            if seconds == 0:
                return "timeout 0 (ring until the Queue() timeout) has none: ring_timeout 15 kept"
            queue["ring_timeout"] = seconds
        elif key == "retry":
            queue["retry"] = seconds
        elif key == "wrapuptime":
            queue["wrap_up"] = seconds
        elif key == "servicelevel" and seconds > 0:
            queue["service_level"] = {"seconds": seconds}
        elif key == "maxlen" and seconds > 0:
            return (
                "the ACD's max_length sends callers beyond it to an overflow target, which "
                "app_queue leaves to the dialplan: add max_length with an overflow by hand"
            )
        return None
    if key == "autopause":
        flag = value.lower()
        if flag in ("yes", "no", "true", "false", "1", "0", "on", "off"):
            queue["auto_pause_after"] = 1 if flag in ("yes", "true", "1", "on") else 0
            return None
        return f"autopause {value}: the ACD pauses an agent only in the queue's own misses"
    if key == "ringinuse" and value.lower() in _OFF:
        return None  # the ACD never offers a call to an agent on a call
    if key == "joinempty":
        # Callers always join the ACD's queue; "no", "strict", "paused"... refuse them.
        return None if value.lower() in ("yes", "true", "1", "on") else _WHY_NOT[key]
    if value.lower() in _OFF:
        return None  # a feature turned off: the ACD does not do it either
    return _WHY_NOT.get(key, "no ACD equivalent")


def _agents(
    lines: list[tuple[str, ConfEntry]], unmapped: list[Unmapped], errors: list[str]
) -> dict[str, _Agent]:
    agents: dict[str, _Agent] = {}
    by_interface: dict[str, str] = {}
    for queue, entry in lines:
        fields = [f.strip() for f in entry.value.split(",")]
        interface = fields[0]
        m = _INTERFACE.match(interface)
        if m is None:
            errors.append(
                f"{entry.where}: {_shown(entry)}: not a member 'Tech/resource,penalty,name'"
            )
            continue
        penalty_text = fields[1] if len(fields) > 1 and fields[1] else "0"
        if not penalty_text.isdigit() or int(penalty_text) > MAX_PENALTY:
            errors.append(
                f"{entry.where}: {_shown(entry)}: penalty {penalty_text!r} is not a whole "
                f"number 0-{MAX_PENALTY}"
            )
            continue
        name = fields[2] if len(fields) > 2 and fields[2] else None
        agent_id = by_interface.get(interface) or _agent_id(m, interface, agents)
        by_interface[interface] = agent_id
        agent = agents.setdefault(agent_id, _Agent(interface, name))
        if name is not None and agent.name is not None and name != agent.name:
            unmapped.append(
                Unmapped(entry.where, _shown(entry), f"agent {agent_id} is already {agent.name!r}")
            )
        agent.name = agent.name or name
        if queue in agent.queues:
            unmapped.append(Unmapped(entry.where, _shown(entry), f"member of {queue} twice"))
        agent.queues.setdefault(queue, int(penalty_text))
        if len(fields) > 3 and fields[3]:
            unmapped.append(
                Unmapped(
                    entry.where,
                    f"state_interface {fields[3]}",
                    "the ACD follows the device of the interface it rings",
                )
            )
        if len(fields) > 4 and fields[4] and fields[4].lower() not in ("no", "0", "false"):
            unmapped.append(
                Unmapped(entry.where, f"ringinuse {fields[4]}", "the ACD never rings a busy agent")
            )
    return agents


def _agent_id(m: re.Match[str], interface: str, agents: dict[str, _Agent]) -> str:
    """The interface's resource (``6001``); another interface with that resource gets the
    whole interface, made a plain name."""
    resource = m["resource"]
    if resource not in agents:
        return resource
    return re.sub(r"[^A-Za-z0-9_.-]", "-", interface)


def _agent_interface(agents: dict[str, _Agent]) -> str | None:
    """The most common interface with the agent id as ``{agent}``."""
    shapes = Counter(
        a.interface.replace(agent_id, "{agent}", 1)
        for agent_id, a in agents.items()
        if agent_id in a.interface
    )
    return shapes.most_common(1)[0][0] if shapes else None


def _agent_entry(agent_id: str, agent: _Agent, template: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    entry["name"] = agent.name or agent_id  # the ACD wants a name; app_queue's is optional
    if template is None or template.format(agent=agent_id) != agent.interface:
        entry["interface"] = agent.interface
    entry["queues"] = agent.queues
    return entry


def _number(text: str) -> int | float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def _shown(entry: ConfEntry) -> str:
    return f"{entry.key} {'=>' if entry.is_object else '='} {entry.value}"


def _order(where: str) -> tuple[str, int]:
    path, _, line = where.rpartition(":")
    return path, int(line) if line.isdigit() else 0
