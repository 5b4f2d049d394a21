"""Every error the screen-pop bridge raises, in one place (as ``acd/errors.py`` does for the ACD).

* :class:`CrmStartupError` — the bridge cannot start: nothing was started.
  :class:`CrmConfigError` is its configuration (the customer-profile rules file): the message
  names the file, the key and the fix. ``setting`` names the field of the bridge's service
  settings to fix (None when the message says it all), so the process that built those
  settings can name its own key instead.

The pure profile core (``crm_bridge.pyramid``, ``loyalty``, ``lifecycle``, ``lifetime``,
``profile``) raises only :class:`ValueError` for data that breaks its contract (a NaN amount,
a customer given twice): the edge that reads the data (import, database) validates first.

The customer data layer (``numbers``, ``store``, ``importer``, ``generator``):

* :class:`NumberError` — a phone number that is no valid number (the message says why).
* :class:`UnknownCustomer` — a customer id the customer table does not hold.
* :class:`DuplicateCustomer` — a customer id that is already taken.
* :class:`ImportRejected` — a customers/orders file with bad rows: every problem, with its
  file and line; nothing was imported.
"""

from __future__ import annotations

__all__ = [
    "CrmConfigError",
    "CrmStartupError",
    "DuplicateCustomer",
    "ImportRejected",
    "NumberError",
    "UnknownCustomer",
]


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


class NumberError(ValueError):
    """A phone number that cannot be made E.164: the message names the number and why
    (empty, not a number, too short, too long, no such country code, invalid in its region)."""


class UnknownCustomer(LookupError):
    """No customer has this id (``customer_id``)."""

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        super().__init__(f"no customer with id {customer_id!r}")


class DuplicateCustomer(ValueError):
    """A customer id that is already taken (``customer_id``)."""

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        super().__init__(f"customer id {customer_id!r} is already taken")


class ImportRejected(ValueError):
    """A customers or orders file that cannot be imported; ``problems`` lists each bad row as
    ``FILE line N: ...`` (every one found, in file order). Nothing was imported."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem{'' if len(problems) == 1 else 's'}")
