"""How free agents of a queue are ordered: one number per (agent, queue), lower first.

``score = penalty * PENALTY_STEP + strategy part``, the part being below ``PENALTY_STEP``, so
a member with a lower penalty is always preferred when free (as in app_queue); the strategy
orders members of equal penalty; equal scores go by agent id (the state store's rule).

* ``longest_idle``: when the agent last became free after a call (earlier first);
* ``fewest_calls``: calls answered since the process started, fewer first;
* ``round_robin``: when the agent was last offered a call of this queue (the memory: the
  least recently offered goes next, which cycles through members in id order);
* ``ring_all``: every free member of the best penalty rings at once (part 0);
* ``skills_weighted``: the agent's mean proficiency in the queue's required skills (all
  its skills when the queue requires none), higher first.

A score is fixed when the agent becomes free, which is what lets a sorted set keep it.
"""

from __future__ import annotations

from collections.abc import Mapping

from .agents import Agent
from .config import QueueConfig

#: Larger than any strategy part (epoch seconds stay below 1e10 until 2286).
PENALTY_STEP = 1e10


def eligible(skills: Mapping[str, int], queue: QueueConfig) -> bool:
    """Whether an agent with ``skills`` has every skill ``queue`` requires, at its minimum."""
    return all(skills.get(skill, -1) >= minimum for skill, minimum in queue.skills.items())


def agent_score(agent: Agent, queue: QueueConfig, penalty: int, skills: Mapping[str, int]) -> float:
    """The agent's place among the free members of ``queue`` (lower goes first)."""
    return penalty * PENALTY_STEP + _strategy_part(agent, queue, skills)


def _strategy_part(agent: Agent, queue: QueueConfig, skills: Mapping[str, int]) -> float:
    match queue.strategy:
        case "longest_idle":
            return agent.idle_since
        case "fewest_calls":
            return agent.calls_taken
        case "round_robin":
            return agent.last_offered.get(queue.name, 0.0)
        case "ring_all":
            return 0.0
        case "skills_weighted":
            levels = [skills.get(s, 0) for s in queue.skills] or list(skills.values()) or [0]
            return 100.0 - sum(levels) / len(levels)
    raise AssertionError(f"strategy {queue.strategy!r} passed validation")
