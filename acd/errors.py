"""Every error the ACD raises, in one place (the modules that raise them re-export them).

Three families, caught for different reasons:

* :class:`AcdStartupError` — the ACD service cannot start: nothing was started.
  :class:`AcdConfigError` (the queues file: its message names the file, the key and the
  fix) and :class:`StateStoreError` (the shared state store's URL is unusable, or the store
  does not answer at start-up). Each carries ``setting``, the field of
  :class:`acd.config.AcdServiceSettings` to fix (None when the message says it all), so the
  process that built those settings can name its own key (``redis.url``,
  ``CALLCENTER_REDIS__URL``) instead.
* :class:`AcdError` — a command or report the running ACD refuses (an unknown agent, a
  pause while on a call, an offer that is gone); nothing was changed. The driver logs these
  and routes on.
* :class:`AcdStateUnavailable` — the state store did not answer during an operation (see
  ``acd.store_health``: routing goes on, on this backend's own view).
"""

from __future__ import annotations

__all__ = [
    "AcdConfigError",
    "AcdError",
    "AcdStartupError",
    "AcdStateUnavailable",
    "AgentBusy",
    "AgentStateError",
    "AlreadyLoggedIn",
    "DuplicateCallback",
    "NotLoggedIn",
    "NotPaused",
    "StateStoreError",
    "UnknownAgent",
    "UnknownCall",
    "UnknownOffer",
]


# -- start-up --------------------------------------------------------------------------------


class AcdStartupError(Exception):
    """The ACD cannot start. ``problem`` says what is wrong; ``setting`` names the
    :class:`~acd.config.AcdServiceSettings` field to fix (or None); ``also`` is what else to
    check (e.g. that a server is up). ``str()`` is the whole message in the ACD's terms."""

    def __init__(self, problem: str, *, setting: str | None = None, also: str = "") -> None:
        self.problem = problem
        self.setting = setting
        self.also = also
        super().__init__(self.message(setting and f"the ACD setting {setting!r}"))

    def message(self, setting: str | None) -> str:
        """The message, naming the setting to fix as ``setting`` (e.g. a configuration key
        and its environment variable) when there is one."""
        if setting is None:
            return self.problem
        also = f" {self.also}" if self.also else ""
        return f"{self.problem}; check {setting}{also}"


class AcdConfigError(AcdStartupError):
    """The ACD's configuration file cannot be used; the message names the file, the key and
    the reason."""


class StateStoreError(AcdStartupError):
    """The shared state store cannot be used at start-up: its URL is not one
    (``setting`` ``redis_url``), or it does not answer."""


# -- refused commands ------------------------------------------------------------------------


class AcdError(Exception):
    """A command or report the ACD refuses; nothing was changed."""


class UnknownAgent(AcdError):
    """No agent with that id is configured."""


class AgentStateError(AcdError):
    """The command does not fit the agent's current state."""


class AlreadyLoggedIn(AgentStateError):
    pass


class NotLoggedIn(AgentStateError):
    pass


class AgentBusy(AgentStateError):
    """The agent is ringing or on a call: pause or log out after it."""


class NotPaused(AgentStateError):
    pass


class UnknownCall(AcdError):
    """The call is not waiting in any queue of this router."""


class UnknownOffer(AcdError):
    """No such offer is ringing (it was answered elsewhere, cancelled or timed out)."""


class DuplicateCallback(AcdError):
    """A callback request for that number already waits in that queue."""


# -- the state store at run time ---------------------------------------------------------------


class AcdStateUnavailable(RuntimeError):
    """The store could not be reached (or did not answer in time); the operation named in
    the message was applied entirely or not at all (after a timeout one cannot tell which)."""
