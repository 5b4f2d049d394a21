"""Every error the screen-pop bridge raises, in one place (as ``acd/errors.py`` does for the ACD).

* :class:`CrmStartupError` — the bridge cannot start: nothing was started.
  :class:`CrmConfigError` is its configuration (the customer-profile rules file): the message
  names the file, the key and the fix. ``setting`` names the field of the bridge's service
  settings to fix (None when the message says it all), so the process that built those
  settings can name its own key instead.

The pure profile core (``crm_bridge.pyramid``, ``loyalty``, ``lifecycle``, ``lifetime``,
``profile``) raises only :class:`ValueError` for data that breaks its contract (a NaN amount,
a customer given twice): the edge that reads the data (import, database) validates first.
"""

from __future__ import annotations

__all__ = ["CrmConfigError", "CrmStartupError"]


class CrmStartupError(Exception):
    """The bridge cannot start. ``problem`` says what is wrong; ``setting`` names the service
    setting to fix (or None); ``str()`` is the whole message in the bridge's terms."""

    def __init__(self, problem: str, *, setting: str | None = None) -> None:
        self.problem = problem
        self.setting = setting
        super().__init__(self.message(setting and f"the CRM bridge setting {setting!r}"))

    def message(self, setting: str | None) -> str:
        """The message, naming the setting to fix as ``setting`` (e.g. a configuration key
        and its environment variable) when there is one."""
        if setting is None:
            return self.problem
        return f"{self.problem}; check {setting}"


class CrmConfigError(CrmStartupError):
    """The customer-profile rules cannot be used; the message names the file, the key and the
    fix."""
