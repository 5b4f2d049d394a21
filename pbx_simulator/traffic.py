"""Simulated callers: Poisson arrivals into the DIDs, caller IDs from a customer list,
IVR digits, and patience (a caller not yet talking to an agent hangs up after it).
Pure: drives the core through its scheduler and the same path as AMI Originate.

Callers of the dialplan menu (DID 5001) press 1 and an account number. Callers of the AGI
DIDs (5002 AsyncAGI, 5004 FastAGI) key what the product's example flow ``config/ivr/main.yaml``
asks: 1 for sales; 2, then a Luhn-valid account number and ``#`` for support; or 9 (French)
then 1. Their patience starts after :data:`IVR_SECONDS`, the flow's prompts taking longer
than a dialplan menu."""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cti.ami.codec import Message

from .engine import Channel, Pbx
from .manager import ManagerCore
from .settings import TrafficSettings

DEMO_CUSTOMERS = Path(__file__).resolve().parent.parent / "config" / "demo-customers.csv"
#: Seconds an AGI-route caller spends in the flow (welcome, menu, announcements) before
#: its patience counts: they wait on hold, not in the menu.
IVR_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Customer:
    name: str
    number: str

    @property
    def callerid(self) -> str:
        """CallerID for Originate; withheld numbers stay ``<unknown>``."""
        number = self.number if self.number and self.number != "<unknown>" else ""
        return f'"{self.name}" <{number}>' if self.name else f"<{number}>"


def caller_originate(
    did: str, callerid: str, exten: str, variables: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The fields of an Originate that makes a caller, as the recordings' driver did: the
    ``;2`` half dials ``did`` in [inbound], the ``;1`` half runs the person's script
    ``exten`` of [caller-script] with ``variables`` (LAB_WAIT, LAB_DTMF1...)."""
    return [
        ("Channel", f"Local/{did}@inbound"),
        ("Context", "caller-script"),
        ("Exten", exten),
        ("Priority", "1"),
        ("Async", "true"),
        ("CallerID", callerid),
        *variables,
    ]


def load_customers(path: Path | None = None) -> list[Customer]:
    """``name,number`` rows (header optional). Raises ValueError on a bad file."""
    text = (path or DEMO_CUSTOMERS).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["name", "number"]:
        rows = rows[1:]
    customers = []
    for lineno, row in enumerate(rows, 2):
        if not row:
            continue
        if len(row) != 2:
            raise ValueError(f"{path}: line {lineno}: expected 'name,number', got {row!r}")
        customers.append(Customer(row[0].strip(), row[1].strip()))
    if not customers:
        raise ValueError(f"{path}: no customers")
    return customers


class TrafficGenerator:
    """Places calls at exponential inter-arrival times (``calls_per_minute``)."""

    def __init__(self, core: ManagerCore, settings: TrafficSettings, rng: random.Random) -> None:
        self.core = core
        self.pbx: Pbx = core.pbx
        self.settings = settings
        self.rng = rng
        self.customers = load_customers(settings.customers_csv)
        self.placed = 0
        self.pbx.handle_time = self._handle_time
        #: The PBX side of each caller still waiting -> the caller (the ;1 half).
        self._waiting: dict[str, Channel] = {}
        self._bridge = self.pbx.bridge_action
        self.pbx.bridge_action = self._bridged

    def _handle_time(self) -> float:
        return max(2.0, self.rng.expovariate(1 / self.settings.mean_handle_time))

    def _bridged(self, one: Channel, two: Channel) -> None:
        """AMI ``Bridge`` (the product's ACD connecting a parked caller to an agent): the
        caller talks for a drawn handle time, then hangs up. app_queue's agent legs end
        their calls themselves; an agent leg bridged by action just stands by."""
        self._bridge(one, two)
        for ch in (one, two):
            caller = self._waiting.pop(ch.name, None)
            if caller is not None:
                self.core.scheduler.call_later(
                    self._handle_time(), partial(self.pbx.hangup, caller, 16, request=True)
                )

    def start(self) -> None:
        self._schedule_next()

    def _schedule_next(self) -> None:
        gap = self.rng.expovariate(self.settings.calls_per_minute / 60)
        self.core.scheduler.call_later(gap, self._arrival)

    def _arrival(self) -> None:
        self._schedule_next()
        did = self.rng.choice(self.settings.dids)
        self.place_call(
            did,
            self.rng.choice(self.customers),
            self.rng.expovariate(1 / self.settings.mean_patience),
        )

    def place_call(self, did: str, customer: Customer, patience: float) -> None:
        """One caller: Originate ``Local/<did>@inbound`` whose ;1 half is the person."""
        self.placed += 1
        variables = [("Variable", "__LAB_SCENARIO=traffic")]
        route = self.pbx.settings.dids.get(did)
        if route is not None and route.kind == "ivr":
            account = "".join(self.rng.choice("0123456789") for _ in range(5))
            exten = "dtmf"
            variables += [
                ("Variable", f"LAB_DELAY1={round(self.rng.uniform(0.8, 2.5), 1)}"),
                ("Variable", "LAB_DTMF1=1"),
                ("Variable", f"LAB_DELAY2={round(self.rng.uniform(0.5, 2.0), 1)}"),
                ("Variable", f"LAB_DTMF2={account}#"),
                ("Variable", "LAB_WAIT=600"),
            ]
        elif route is not None and route.kind in ("agi", "fastagi"):
            exten = "dtmf"
            variables += self._flow_keys()
            patience += IVR_SECONDS
        else:
            exten = "stay"
        action = Message(
            [("Action", "Originate"), *caller_originate(did, customer.callerid, exten, variables)]
        )
        self.core.originate(action, lambda one: self._started(one, patience))

    def _flow_keys(self) -> list[tuple[str, str]]:
        """A caller's keys for the example flow's menu (see the module): the first key
        during the welcome (barge-in makes it the menu choice), then the rest."""
        choice = self.rng.random()
        if choice < 0.5:
            keys = ["1"]
        elif choice < 0.85:
            body = "".join(self.rng.choice("0123456789") for _ in range(9))
            keys = ["2", f"{body}{luhn_digit(body)}#"]
        else:
            keys = ["9", "1"]
        variables = [("Variable", "LAB_WAIT=600")]
        for n, key in enumerate(keys, 1):
            delay = round(self.rng.uniform(0.8, 2.5) if n == 1 else self.rng.uniform(0.5, 2.0), 1)
            variables += [("Variable", f"LAB_DELAY{n}={delay}"), ("Variable", f"LAB_DTMF{n}={key}")]
        return variables

    def _started(self, one: Channel, patience: float) -> None:
        if one.partner is not None:
            self._waiting[one.partner.name] = one
        self.core.scheduler.call_later(patience, lambda: self._lose_patience(one))

    def _lose_patience(self, one: Channel) -> None:
        """Hang up unless the PBX side of the call is bridged (talking to an agent)."""
        if one.partner is not None:
            self._waiting.pop(one.partner.name, None)
        if not one.gone and one.partner is not None and one.partner.bridge is None:
            self.pbx.hangup(one, 16, request=True)


def luhn_digit(body: str) -> str:
    """The check digit that makes ``body`` + it pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)
