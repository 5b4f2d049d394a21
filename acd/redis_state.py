"""The ACD state in Redis, shared by several backends (one per PBX) and one agent pool.

:class:`RedisState` implements :class:`acd.state.AcdState` with the same total orders as
:class:`acd.state.MemoryState`. Every mutation is one Lua script, so Redis runs it whole or not
at all and no other backend ever sees it half done; that is what makes :meth:`RedisState.claim`
("take the best caller of this queue on my PBX and reserve the best free agents") safe when
several processes claim from the same pool at once.

Keys, all under ``{<namespace>}:`` (one hash tag, so a cluster keeps them in one slot):

* ``caller:<call_id>`` hash: the :class:`WaitingCaller`, plus the names of the sorted sets
  that hold it, so removal needs no key building in Lua.
* ``wq:<queue>`` sorted set: the queue's waiting callers (for :meth:`waiting`, and
  :meth:`position` / :meth:`head` / :meth:`length`: a rank, the first member, a count, so
  a routing step never reads a whole queue), and
  ``wp:<queue>:<pbx>`` the same for one PBX (what :meth:`claim` pops, O(log n)). Their score
  is ``-score`` (Redis sorts ascending) and their member ``<joined_at>`` as 16 hex digits of
  an order-preserving encoding of the float, then the call id: equal scores then fall back to
  Redis's bytewise member order, which is exactly (joined_at, call_id) - UTF-8 byte order is
  code point order, which is Python's string order.
* ``cb:<queue>:<number>`` sorted set: callback requests by insertion sequence (``seq``), so
  :meth:`find_callback` returns the earliest, as ``MemoryState`` does.
* ``free:<queue>`` sorted set: free agents by score, ties by agent id (bytewise).
* ``agent:<agent>`` set: the queues the agent is free in, so a claim removes it from all.
* ``reserved`` set: the agents :meth:`claim` handed out and no backend made free or took off
  since (see ``acd.state`` on presence).
* ``members`` hash: agent -> its queue memberships (JSON ``{queue: penalty}``) for the
  agents a supervisor moved (``MembershipStore``); one HSET writes an agent's whole set.
* ``generation`` string: the run id of the redis-server whose state the backends seeded
  (:meth:`RedisState.generation`); missing or another server's id means the state was lost
  or is an old copy (a restart, empty or from disk), so the backends seed it again
  (``acd.store_health``).

Queue names inside keys with a further part after them are escaped (``%`` and ``:``), so
``wp:a:b:c`` cannot mean two things. Scores and ``joined_at`` must not be NaN (Redis cannot
order NaN); ``claim(agents=...)`` must be >= 0.

Failures: a connection error or timeout raises :class:`~acd.state.AcdStateUnavailable`. A
*timeout* is ambiguous: the script may have run (whole) after the reply was lost. So the
client must not retry scripts by itself (a retried claim whose reply was lost would take a
second caller): :meth:`RedisState.from_url` builds a client with no retries and a bounded,
blocking pool. ``acd.store_health`` keeps a backend routing through an outage.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from acd.state import AcdStateUnavailable, Claim, WaitingCaller

__all__ = ["AcdStateUnavailable", "RedisState"]

#: Connections a :meth:`RedisState.from_url` pool opens at most; a caller that finds them all
#: busy waits up to ``timeout`` and then gets :class:`AcdStateUnavailable`. A backend's router
#: runs its steps one at a time on one thread (``acd.driver``), so a few connections are
#: plenty; the bound keeps a stuck Redis from making a backend open sockets without end.
DEFAULT_MAX_CONNECTIONS = 8
DEFAULT_TIMEOUT = 1.0


# Shared by the scripts (prepended to each). ARGV[1] is always the key prefix.
_LIB = """
local prefix = ARGV[1]
local function drop_caller(ckey)
  local fields = redis.call('HGETALL', ckey)
  if #fields == 0 then return nil end
  local h = {}
  for i = 1, #fields, 2 do h[fields[i]] = fields[i + 1] end
  redis.call('ZREM', h.wq, h.m)
  redis.call('ZREM', h.wp, h.m)
  if h.cb then redis.call('ZREM', h.cb, h.id) end
  redis.call('DEL', ckey)
  return fields
end
local function caller_key(member)
  return prefix .. 'caller:' .. string.sub(member, 17)
end
local function free_off(agent)
  local akey = prefix .. 'agent:' .. agent
  local queues = redis.call('SMEMBERS', akey)
  for _, q in ipairs(queues) do redis.call('ZREM', prefix .. 'free:' .. q, agent) end
  redis.call('DEL', akey)
  return #queues
end
"""

# KEYS: caller hash, wq, wp, seq[, cb]; ARGV: prefix, -score, member, call_id, hash pairs...
_ADD_CALLER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
if KEYS[5] then redis.call('ZADD', KEYS[5], redis.call('INCR', KEYS[4]), ARGV[4]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
return 1
"""

# KEYS: caller hash.
_REMOVE_CALLER = """
return drop_caller(KEYS[1])
"""

# KEYS: wq. Read in a script so the list and the hashes are one snapshot.
_WAITING = """
local out = {}
for i, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[i] = redis.call('HGETALL', caller_key(member))
end
return out
"""

# KEYS: caller hash. The caller's rank in its queue (all PBXs), 1 first: O(log n).
_POSITION = """
local h = redis.call('HMGET', KEYS[1], 'wq', 'm')
if not h[1] then return nil end
local rank = redis.call('ZRANK', h[1], h[2])
if not rank then return nil end
return rank + 1
"""

# KEYS: wq. The queue's first caller and its hash, one snapshot.
_HEAD = """
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
if #first == 0 then return nil end
return redis.call('HGETALL', caller_key(first[1]))
"""

# KEYS: cb.
_FIND_CALLBACK = """
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
if #first == 0 then return nil end
return redis.call('HGETALL', prefix .. 'caller:' .. first[1])
"""

# KEYS: agent set, reserved; ARGV: prefix, agent, if_idle (0/1), queue, score, queue, score...
_SET_AVAILABLE = """
if ARGV[3] == '1' and redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return 0 end
redis.call('SREM', KEYS[2], ARGV[2])
free_off(ARGV[2])
for i = 4, #ARGV, 2 do
  redis.call('ZADD', prefix .. 'free:' .. ARGV[i], ARGV[i + 1], ARGV[2])
  redis.call('SADD', KEYS[1], ARGV[i])
end
return 1
"""

# KEYS: reserved; ARGV: prefix, agent, if_idle (0/1).
_SET_UNAVAILABLE = """
if ARGV[3] ~= '1' then redis.call('SREM', KEYS[1], ARGV[2]) end
return free_off(ARGV[2])
"""

# KEYS: reserved; ARGV: prefix, agent.
_RESERVE = """
free_off(ARGV[2])
redis.call('SADD', KEYS[1], ARGV[2])
"""

# KEYS: generation; ARGV: prefix, glob of the namespace's keys, run id. Drops the namespace
# (an old copy after a restart from disk, or what backends wrote before anyone noticed the
# restart) unless a backend already seeded this server run.
_CLAIM_GENERATION = """
if redis.call('GET', KEYS[1]) == ARGV[3] then return 0 end
local keys = redis.call('KEYS', ARGV[2])
for i = 1, #keys, 500 do
  redis.call('DEL', unpack(keys, i, math.min(i + 499, #keys)))
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"""

# KEYS: wp, free, reserved; ARGV: prefix, agents (0: all). Reads first, so "nothing found"
# writes nothing.
_CLAIM = """
local best = redis.call('ZRANGE', KEYS[1], 0, 0)
if #best == 0 then return nil end
local chosen = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1)
if #chosen == 0 then return nil end
local caller = drop_caller(caller_key(best[1]))
for _, agent in ipairs(chosen) do
  free_off(agent)
  redis.call('SADD', KEYS[3], agent)
end
return {caller, chosen}
"""


class RedisState:
    """:class:`acd.state.AcdState` in Redis; safe to share between processes.

    ``client`` should have no automatic retries and a bounded pool (see :meth:`from_url`);
    ``namespace`` separates several centers (or tests) in one database.
    """

    def __init__(self, client: redis.Redis, *, namespace: str = "acd") -> None:
        self._client = client
        self._prefix = "{" + namespace + "}:"
        self._reserved_key = self._prefix + "reserved"
        self._members_key = self._prefix + "members"
        kwargs = client.connection_pool.connection_kwargs
        self._where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        script = client.register_script
        self._add_caller = script(_LIB + _ADD_CALLER)
        self._remove_caller = script(_LIB + _REMOVE_CALLER)
        self._waiting = script(_LIB + _WAITING)
        self._position = script(_LIB + _POSITION)
        self._head = script(_LIB + _HEAD)
        self._find_callback = script(_LIB + _FIND_CALLBACK)
        self._set_available = script(_LIB + _SET_AVAILABLE)
        self._set_unavailable = script(_LIB + _SET_UNAVAILABLE)
        self._claim = script(_LIB + _CLAIM)
        self._reserve = script(_LIB + _RESERVE)
        self._claim_generation = script(_CLAIM_GENERATION)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "acd",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RedisState:
        """A store on its own client: a blocking pool of at most ``max_connections``
        (waiting up to ``timeout`` s for one), ``timeout`` s to connect and per reply, and no
        automatic retry. Close it with :meth:`close`."""
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(redis.Redis(connection_pool=pool), namespace=namespace)

    @property
    def where(self) -> str:
        """The server, for messages: ``host:port`` or the socket path."""
        return self._where

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()
        self._client.connection_pool.disconnect()

    def add_caller(self, caller: WaitingCaller) -> bool:
        _check(caller.score, "score")
        _check(caller.joined_at, "joined_at")
        fields: dict[str, str] = {
            "id": caller.call_id,
            "queue": caller.queue,
            "pbx": caller.pbx,
            "score": repr(float(caller.score)),
            "joined_at": repr(float(caller.joined_at)),
            "tier": caller.tier,
            "m": _order(caller.joined_at) + caller.call_id,
            "wq": self._key("wq", caller.queue),
            "wp": self._key("wp", caller.queue, caller.pbx),
        }
        if caller.number is not None:
            fields["number"] = caller.number
        caller_key = self._key("caller", caller.call_id)
        keys = [caller_key, fields["wq"], fields["wp"], self._prefix + "seq"]
        if caller.callback is not None:
            fields["callback"] = caller.callback
            fields["cb"] = self._key("cb", caller.queue, caller.callback)
            keys.append(fields["cb"])
        pairs = [x for item in fields.items() for x in item]
        args = [self._prefix, repr(-float(caller.score)), fields["m"], caller.call_id, *pairs]
        with self._guard(f"add_caller({caller.call_id!r})"):
            return bool(self._add_caller(keys, args))

    def remove_caller(self, call_id: str) -> WaitingCaller | None:
        with self._guard(f"remove_caller({call_id!r})"):
            fields = self._remove_caller([self._key("caller", call_id)], [self._prefix])
        return _caller(fields) if fields else None

    def waiting(self, queue: str) -> list[WaitingCaller]:
        with self._guard(f"waiting({queue!r})"):
            rows = self._waiting([self._key("wq", queue)], [self._prefix])
        return [_caller(fields) for fields in rows]

    def position(self, call_id: str) -> int | None:
        with self._guard(f"position({call_id!r})"):
            rank = self._position([self._key("caller", call_id)], [self._prefix])
        return None if rank is None else int(rank)

    def head(self, queue: str) -> WaitingCaller | None:
        with self._guard(f"head({queue!r})"):
            fields = self._head([self._key("wq", queue)], [self._prefix])
        return _caller(fields) if fields else None

    def length(self, queue: str) -> int:
        with self._guard(f"length({queue!r})"):
            return int(self._client.zcard(self._key("wq", queue)))

    def find_callback(self, queue: str, number: str) -> WaitingCaller | None:
        with self._guard(f"find_callback({queue!r})"):
            fields = self._find_callback([self._key("cb", queue, number)], [self._prefix])
        return _caller(fields) if fields else None

    def set_available(
        self, agent: str, scores: Mapping[str, float], *, if_idle: bool = False
    ) -> bool:
        args: list[str | int] = [self._prefix, agent, int(if_idle)]
        for queue, score in scores.items():
            _check(score, "score")
            args += [queue, repr(float(score))]
        keys = [self._key("agent", agent), self._reserved_key]
        with self._guard(f"set_available({agent!r})"):
            return bool(self._set_available(keys, args))

    def set_unavailable(self, agent: str, *, if_idle: bool = False) -> bool:
        args: list[str | int] = [self._prefix, agent, int(if_idle)]
        with self._guard(f"set_unavailable({agent!r})"):
            return bool(self._set_unavailable([self._reserved_key], args))

    def reserved(self, agent: str) -> bool:
        with self._guard(f"reserved({agent!r})"):
            return bool(self._client.sismember(self._reserved_key, agent))

    def available(self, queue: str) -> list[str]:
        with self._guard(f"available({queue!r})"):
            # redis-py types a member as a (member, score) pair too, for withscores=True.
            free = self._client.zrange(self._key("free", queue), 0, -1)
            return [_text(a) for a in cast("list[bytes | str]", free)]

    def reserve(self, agent: str) -> None:
        with self._guard(f"reserve({agent!r})"):
            self._reserve([self._reserved_key], [self._prefix, agent])

    def memberships(self) -> dict[str, dict[str, int]]:
        with self._guard("memberships()"):
            raw = self._client.hgetall(self._members_key)
        return {_text(agent): _queues(_text(value)) for agent, value in raw.items()}

    def set_memberships(self, agent: str, queues: Mapping[str, int]) -> None:
        value = json.dumps({queue: int(penalty) for queue, penalty in queues.items()})
        with self._guard(f"set_memberships({agent!r})"):
            self._client.hset(self._members_key, agent, value)

    def generation(self) -> tuple[str, str | None]:
        """``(run id of the server now, run id the state was seeded under or None)``: they
        differ after a restart (the state is then empty or an old copy). Also the cheap
        "is Redis there" probe of ``acd.store_health``."""
        with self._guard("generation()"):
            pipe = self._client.pipeline(transaction=False)
            pipe.info("server")
            pipe.get(self._prefix + "generation")
            info, marker = pipe.execute()
        return str(info["run_id"]), None if marker is None else _text(marker)

    def claim_generation(self, run_id: str) -> bool:
        """Seed-time step after a restart: unless a backend already did it for ``run_id``,
        drop every key of the namespace and mark the state as seeded under ``run_id``;
        True if this call did it. Every backend then seeds what it knows."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self._prefix) + "*"
        keys, args = [self._prefix + "generation"], [self._prefix, pattern, run_id]
        with self._guard("claim_generation()"):
            return bool(self._claim_generation(keys, args))

    def claim(self, queue: str, pbx: str, agents: int = 1) -> Claim | None:
        if agents < 0:
            raise ValueError(f"agents must be >= 0, not {agents}")
        keys = [self._key("wp", queue, pbx), self._key("free", queue), self._reserved_key]
        with self._guard(f"claim({queue!r}, {pbx!r}, agents={agents})"):
            found = self._claim(keys, [self._prefix, agents])
        if not found:
            return None
        fields, chosen = found
        return Claim(_caller(fields), tuple(_text(a) for a in chosen))

    def _key(self, kind: str, *parts: str) -> str:
        # Every part but the last is escaped, so the last may hold anything (even ':').
        *head, last = parts
        escaped = [p.replace("%", "%25").replace(":", "%3A") for p in head]
        return self._prefix + kind + ":" + ":".join([*escaped, last])

    @contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise AcdStateUnavailable(
                f"ACD state: {operation} failed, Redis at {self._where} unavailable "
                f"({type(exc).__name__}: {exc}); a change is applied whole or not at all"
            ) from exc


def _check(value: float, what: str) -> None:
    if math.isnan(value):
        raise ValueError(f"{what} must not be NaN")


def _order(joined_at: float) -> str:
    """16 hex digits whose string order is the float order (``-0.0`` is ``0.0``)."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", joined_at + 0.0))
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _queues(value: str) -> dict[str, int]:
    queues = json.loads(value)
    if not isinstance(queues, dict):
        raise ValueError(f"ACD state: memberships {value!r} are not a JSON object")
    return {str(queue): int(penalty) for queue, penalty in queues.items()}


def _caller(flat: list[Any]) -> WaitingCaller:
    h = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
    return WaitingCaller(
        call_id=h["id"],
        queue=h["queue"],
        pbx=h["pbx"],
        score=float(h["score"]),
        joined_at=float(h["joined_at"]),
        tier=h["tier"],
        number=h.get("number"),
        callback=h.get("callback"),
    )
