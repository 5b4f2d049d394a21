"""Demo and benchmark customers: names from many countries (non-ASCII), one to three E.164
numbers (mostly of the default region, a few foreign, a few lines shared by two customers),
three years of purchases and a year or two of contacts, shaped so that every class of the
profile occurs (``docs/customer-profile.md``) with the default rules:

* **lifecycle**: each customer gets a stage to act out: *potential* (no order), *development*
  (first order in the last 8 months), *growth* / *mature* / *decline* (the last 6 months'
  buying rate 2.5x / 1x / 0.25x the earlier one), *lost* (stopped 13 to 30 months ago);
* **loyalty**: a buying rate (rare, some, frequent) and a breadth (one category, or
  several) cross into none / latent / inertial / true;
* **tier**: order values drawn from a long-tailed distribution, so a few customers hold much
  of the revenue (VIP, key) and some hold very little (small, when ``small_below`` is set);
* **quadrant**: a few customers complained or gave up waiting three times in the last year
  (not satisfied), so loyal and disloyal customers occur satisfied and not;
* refunds: about 2% of purchases are refunded a few days later.

Deterministic: the same seed, counts, ``now`` and region give the same rows. Rows are written
with batched Core inserts into the existing tables (``source`` ``generated``, ids
``G<seed>-<n>``, contacts on pbx ``generated``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from sqlalchemy import Connection, Engine, select

from crm_bridge.customer import DAY
from crm_bridge.errors import DuplicateCustomer
from crm_bridge.numbers import check_region
from crm_bridge.schema import contacts, customer_numbers
from crm_bridge.schema import customers as customers_t
from crm_bridge.schema import orders as orders_t
from crm_bridge.store import bulk_insert

__all__ = ["CATEGORIES", "GeneratedSummary", "Progress", "customer_id", "generate"]

#: ``progress(what, done, total)``: rows of ``what`` (customers, orders) written so far.
Progress = Callable[[str, int, int], None]

#: The product lines orders are in.
CATEGORIES = (
    "books",
    "electronics",
    "garden",
    "kitchen",
    "fashion",
    "toys",
    "sports",
    "beauty",
    "office",
    "travel",
)

#: Rows per INSERT batch.
BATCH = 5000

# Given names and family names per language, written here (Latin scripts with their
# diacritics, Cyrillic, Greek, Han, Arabic); the mix makes every screen show non-ASCII.
_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "de": (
        ("Jürgen", "Sören", "Jörg", "Käthe", "Ute", "Björn", "Grete", "Lukas", "Anna", "Uwe"),
        ("Müller", "Schäfer", "Weiß", "Groß", "Köhler", "Brückner", "Hoffmann", "Öztürk"),
    ),
    "fr": (
        ("Élodie", "François", "Hélène", "Noël", "Zoé", "Jérôme", "Anaïs", "Loïc", "Céline"),
        ("Dubois", "Lefèvre", "Gaël", "Rousseau", "Béranger", "Mercier", "Pérez", "Frère"),
    ),
    "es": (
        ("José", "María", "Begoña", "Íñigo", "Lucía", "Ángel", "Sofía", "Raúl", "Nuria"),
        ("García", "Muñoz", "Núñez", "Peña", "Ibáñez", "Gómez", "Martín", "Castaño"),
    ),
    "pl": (
        ("Łukasz", "Małgorzata", "Wojciech", "Zofia", "Paweł", "Agnieszka", "Michał", "Ewa"),
        ("Wiśniewski", "Kowalczyk", "Wójcik", "Zieliński", "Szymańska", "Dąbrowska", "Król"),
    ),
    "ru": (
        ("Алексей", "Наталья", "Дмитрий", "Ольга", "Сергей", "Татьяна", "Юрий", "Екатерина"),
        ("Иванов", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", "Фёдоров"),
    ),
    "el": (
        ("Γιώργος", "Ελένη", "Νίκος", "Μαρία", "Δημήτρης", "Κατερίνα", "Σοφία", "Άγγελος"),
        ("Παπαδόπουλος", "Παππά", "Νικολάου", "Γεωργίου", "Οικονόμου", "Βασιλείου"),
    ),
    "zh": (
        ("伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "军"),
        ("王", "李", "张", "刘", "陈", "杨", "黄", "赵"),
    ),
    "ar": (
        ("محمد", "فاطمة", "أحمد", "مريم", "علي", "ليلى", "يوسف", "نور"),
        ("الحسن", "العلي", "منصور", "حداد", "الخطيب", "سعيد", "ناصر"),
    ),
    "en": (
        ("James", "Olivia", "Noah", "Emma", "Liam", "Ava", "Siobhán", "Zoë", "Seán"),
        ("Smith", "O'Brien", "Johnson", "Brown", "Nguyễn", "Walker", "Ó Súilleabháin"),
    ),
}
_FAMILY_FIRST = {"zh"}  # Chinese names are family name first, no space
_LANGUAGES = tuple(_NAMES)
#: Where foreign numbers come from.
_FOREIGN = ("DE", "FR", "ES", "PL", "RU", "GR", "CN", "EG", "GB", "US", "IT", "TR")

# Lifecycle stages to act out, with their share of customers (cumulative weights below).
_STAGES = (
    ("potential", 0.05),
    ("development", 0.12),
    ("growth", 0.15),
    ("mature", 0.33),
    ("decline", 0.15),
    ("lost", 0.20),
)
# The last 6 months' buying rate against the earlier rate, by stage.
_RECENT_FACTOR = {"growth": 2.5, "mature": 1.0, "decline": 0.25}
# Buying-rate classes: (share of customers, weight in the order allocation).
_RATES = ((0.35, 0.3), (0.35, 1.0), (0.30, 3.0))


@dataclass(frozen=True, slots=True)
class GeneratedSummary:
    """What :func:`generate` wrote, and how long it took (seconds)."""

    customers: int
    numbers: int
    shared_numbers: int
    orders: int
    refunds: int
    contacts: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"generated {self.customers} customers ({self.numbers} numbers, "
            f"{self.shared_numbers} shared by two), {self.orders} orders ({self.refunds} "
            f"refunds), {self.contacts} contacts in {self.seconds:.1f} s"
        )


@dataclass(slots=True)
class _Plan:
    """One customer's shape before its orders are drawn."""

    stage: str
    rate: float
    categories: tuple[str, ...]
    start: float  # first purchase
    end: float  # last possible purchase
    order_value: float
    first_seen: float | None
    unhappy: str | None  # None, "complaint" or "abandoned"


def customer_id(seed: int, n: int) -> str:
    """The id of the ``n``-th generated customer (from 0) of ``seed``."""
    return f"G{seed}-{n + 1:07d}"


def generate(
    engine: Engine,
    customers: int,
    orders: int,
    *,
    seed: int,
    now: float,
    region: str,
    progress: Progress | None = None,
) -> GeneratedSummary:
    """Write ``customers`` customers and ``orders`` orders (purchases and refunds, over the
    three years before ``now``) plus their contacts, in one transaction.
    :class:`DuplicateCustomer` when customers of this seed exist already (another seed
    adds to them); :class:`ValueError` for negative counts, or orders without customers."""
    if customers < 0 or orders < 0:
        raise ValueError("the numbers of customers and orders must not be negative")
    if orders and not customers:
        raise ValueError("orders need customers: give --customers too")
    check_region(region)
    started = time.monotonic()
    rng = random.Random(seed)
    report = progress or (lambda what, done, total: None)
    plans = [_plan(rng, now) for _ in range(customers)]
    counts = _allocate(rng, plans, orders)
    phones = _Phones(rng, region)
    tally = {"numbers": 0, "shared": 0, "orders": 0, "refunds": 0, "contacts": 0}
    with engine.begin() as conn:
        if (
            customers
            and conn.execute(
                select(customers_t.c.id).where(customers_t.c.id == customer_id(seed, 0))
            ).first()
        ):
            raise DuplicateCustomer(customer_id(seed, 0))
        out = _Batches(conn, report, {"customers": customers, "orders": orders})
        for n, plan in enumerate(plans):
            cid = customer_id(seed, n)
            email = f"{cid.lower()}@example.com" if rng.random() < 0.6 else None
            out.add("customers", (cid, _name(rng), email, plan.first_seen, now, now, "generated"))
            for number in phones.numbers_for():
                tally["shared"] += phones.shared(number)
                out.add("numbers", (cid, number))
        out.flush()  # every customer is in before its orders and contacts (foreign keys)
        for n, (plan, count) in enumerate(zip(plans, counts, strict=True)):
            cid = customer_id(seed, n)
            for row in _orders(rng, cid, plan, count, now):
                tally["refunds"] += row[2] < 0
                out.add("orders", row)
            for row in _contacts(rng, seed, n, cid, plan, now):
                out.add("contacts", row)
        out.flush()
    tally.update(out.written)
    return GeneratedSummary(
        customers,
        tally["numbers"],
        tally["shared"],
        tally["orders"],
        tally["refunds"],
        tally["contacts"],
        time.monotonic() - started,
    )


_COLUMNS = {
    "customers": (
        customers_t,
        ("id", "name", "email", "first_seen", "created_at", "changed_at", "source"),
    ),
    "numbers": (customer_numbers, ("customer_id", "number")),
    "orders": (orders_t, ("customer_id", "at", "amount_cents", "category")),
    "contacts": (
        contacts,
        ("pbx", "call_id", "customer_id", "number", "at", "queue", "agent", "wait", "talk",
         "outcome", "ivr_path", "complaint"),
    ),
}  # fmt: skip


class _Batches:
    """Rows per table, written :data:`BATCH` at a time (customers before their numbers,
    orders and contacts); progress is reported per customers and per orders written."""

    def __init__(self, conn: Connection, report: Progress, totals: dict[str, int]) -> None:
        self.conn = conn
        self.report = report
        self.totals = totals
        self.rows: dict[str, list[tuple[Any, ...]]] = {what: [] for what in _COLUMNS}
        self.written = dict.fromkeys(_COLUMNS, 0)

    def add(self, what: str, row: tuple[Any, ...]) -> None:
        rows = self.rows[what]
        rows.append(row)
        if len(rows) >= BATCH:
            if what == "numbers":  # their customers first (the foreign key)
                self._write("customers")
            self._write(what)

    def flush(self) -> None:
        for what in _COLUMNS:
            self._write(what)

    def _write(self, what: str) -> None:
        rows = self.rows[what]
        if not rows:
            return
        table, columns = _COLUMNS[what]
        bulk_insert(self.conn, table, columns, rows)
        self.written[what] += len(rows)
        self.rows[what] = []
        if what in ("customers", "orders"):
            self.report(what, self.written[what], self.totals.get(what, 0))


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    x = rng.random() * sum(w for _, w in weighted)
    for value, weight in weighted:
        x -= weight
        if x < 0:
            return value
    return weighted[-1][0]


def _plan(rng: random.Random, now: float) -> _Plan:
    stage = _pick(rng, _STAGES)
    x = rng.random()
    rate = _RATES[0][1] if x < _RATES[0][0] else _RATES[1][1] if x < 0.7 else _RATES[2][1]
    breadth = 1 if rng.random() < 0.45 else rng.randint(2, 4)
    categories = tuple(rng.sample(CATEGORIES, breadth))
    if stage == "development":
        start = now - rng.uniform(20, 250) * DAY
        end = now
    elif stage == "lost":
        start = now - rng.uniform(800, 1090) * DAY
        end = now - rng.uniform(390, 760) * DAY
        start = min(start, end - 30 * DAY)
    else:
        start = now - rng.uniform(400, 1090) * DAY
        end = now
    # Long-tailed order values: most customers spend tens, a few thousands per order.
    order_value = math.exp(rng.gauss(math.log(40), 1.0))
    first_seen: float | None = None
    if stage == "potential":
        first_seen = now - rng.uniform(1, 700) * DAY
    elif rng.random() < 0.3:
        first_seen = start - rng.uniform(1, 400) * DAY
    x = rng.random()
    unhappy = "complaint" if x < 0.08 else "abandoned" if x < 0.12 else None
    return _Plan(stage, rate, categories, start, end, order_value, first_seen, unhappy)


def _allocate(rng: random.Random, plans: list[_Plan], total: int) -> list[int]:
    """``total`` orders over the customers: one each for every buyer (nobody planned as
    potential) when there are enough, the rest in proportion to rate x active years, exact by
    largest remainder (ties broken at random: deterministic by seed, no bias to the first)."""
    weights = [
        0.0 if p.stage == "potential" else p.rate * max(p.end - p.start, 30 * DAY) / (365 * DAY)
        for p in plans
    ]
    whole = sum(weights)
    counts = [0] * len(plans)
    if not whole:
        return counts
    rest = total
    if total >= sum(1 for w in weights if w):
        counts = [1 if w else 0 for w in weights]
        rest -= sum(counts)
    shares = [rest * w / whole for w in weights]
    floors = [int(x) for x in shares]
    order = sorted(range(len(plans)), key=lambda i: (floors[i] - shares[i], rng.random()))
    for i in order[: rest - sum(floors)]:
        floors[i] += 1
    return [c + f for c, f in zip(counts, floors, strict=True)]


def _orders(
    rng: random.Random, cid: str, plan: _Plan, count: int, now: float
) -> Iterator[tuple[str, float, int, str]]:
    """``count`` order rows: purchase times by the stage's shape, refunds now and then."""
    recent = now - 180 * DAY
    factor = _RECENT_FACTOR.get(plan.stage)
    if factor is not None and plan.start < recent:
        early = (recent - plan.start) * 1.0
        late = (plan.end - recent) * factor
        split = early / (early + late)
    else:
        split = 1.0
    times = []
    for k in range(count):
        if k == 0:
            at = plan.start  # the first purchase starts the relationship
        elif rng.random() < split:
            at = rng.uniform(plan.start, min(recent, plan.end) if split < 1 else plan.end)
        else:
            at = rng.uniform(recent, plan.end)
        times.append(at)
    times.sort()
    for at in times:
        value = plan.order_value * math.exp(rng.gauss(0, 0.35))
        amount = max(1, round(value * 100))
        category = rng.choice(plan.categories)
        if count > 1 and rng.random() < 0.02 and at < now - 2 * DAY:
            # A refund of an earlier purchase, a few days after it.
            refund_at = min(at + rng.uniform(1, 20) * DAY, now - DAY)
            yield (cid, refund_at, -amount, category)
        else:
            yield (cid, at, amount, category)


def _contacts(
    rng: random.Random, seed: int, n: int, cid: str, plan: _Plan, now: float
) -> list[tuple[Any, ...]]:
    """A few calls over the last two years; unhappy customers' complaint or three abandoned
    calls in the last year."""
    rows = []
    since = max(plan.first_seen or plan.start, now - 730 * DAY)
    outcomes = ("answered",) * 8 + ("abandoned", "callback", "voicemail")
    for k in range(rng.choice((0, 0, 1, 1, 2, 3))):
        rows.append(_call(rng, seed, n, k, cid, rng.uniform(since, now), rng.choice(outcomes)))
    if plan.unhappy == "complaint":
        at = now - rng.uniform(1, 300) * DAY
        rows.append(_call(rng, seed, n, len(rows), cid, at, "answered", complaint=True))
    elif plan.unhappy == "abandoned":
        for _ in range(3):
            at = now - rng.uniform(1, 300) * DAY
            rows.append(_call(rng, seed, n, len(rows), cid, at, "abandoned"))
    return rows


def _call(
    rng: random.Random,
    seed: int,
    n: int,
    k: int,
    cid: str,
    at: float,
    outcome: str,
    *,
    complaint: bool = False,
) -> tuple[Any, ...]:
    answered = outcome in ("answered", "callback")
    return (
        "generated",
        f"{seed}-{n}-{k}",
        cid,
        None,
        at,
        rng.choice(("sales", "support", "billing")),
        f"60{rng.randint(1, 20):02d}" if answered else None,
        round(rng.expovariate(1 / 30), 1),
        round(rng.expovariate(1 / 240), 1) if answered else None,
        outcome,
        ["main", str(rng.randint(1, 3))],
        complaint,
    )


def _name(rng: random.Random) -> str:
    language = rng.choice(_LANGUAGES)
    given, family = _NAMES[language]
    if language in _FAMILY_FIRST:
        return (
            rng.choice(family)
            + rng.choice(given)
            + (rng.choice(given) if rng.random() < 0.5 else "")
        )
    name = f"{rng.choice(given)} {rng.choice(family)}"
    if rng.random() < 0.1:  # a double family name
        name += f"-{rng.choice(family)}"
    return name


class _Phones:
    """Valid E.164 numbers: prefixes checked with the numbering metadata once, then random
    line digits (validity in the metadata does not depend on the last four digits)."""

    def __init__(self, rng: random.Random, region: str) -> None:
        self.rng = rng
        self.region = region
        self.prefixes: dict[str, list[str]] = {}
        self.used: set[str] = set()
        self.twice: set[str] = set()
        self.recent: list[str] = []  # numbers of recent customers, to share one now and then

    def numbers_for(self) -> list[str]:
        rng = self.rng
        how_many = 1 if rng.random() < 0.55 else 2 if rng.random() < 0.75 else 3
        mine: list[str] = []
        if self.recent and rng.random() < 0.01:  # a landline shared with another customer
            shared = rng.choice(self.recent)
            if shared not in self.twice:
                self.twice.add(shared)
                mine.append(shared)
        while len(mine) < how_many:
            region = self.region if rng.random() < 0.9 else rng.choice(_FOREIGN)
            mine.append(self._fresh(region))
        self.recent = (self.recent + mine[-1:])[-50:]
        return mine

    def shared(self, number: str) -> bool:
        return number in self.twice

    def _fresh(self, region: str) -> str:
        prefixes = self.prefixes.get(region) or self._prefixes(region)
        while True:
            number = self.rng.choice(prefixes) + f"{self.rng.randrange(10_000):04d}"
            if number not in self.used:
                self.used.add(number)
                return number

    def _prefixes(self, region: str) -> list[str]:
        """Up to 64 valid number prefixes of ``region`` (E.164 without the last 4 digits),
        from its example mobile and fixed-line numbers with other digits before the last 4."""
        found: set[str] = set()
        rng = random.Random(f"{region}-prefixes")  # the same for every seed: cheap to reuse
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            national = str(example.national_number)
            for _ in range(200):
                head = national[:-6] + f"{rng.randrange(100):02d}"
                candidate = phonenumbers.parse(f"+{example.country_code}{head}0000")
                checks = [
                    phonenumbers.parse(f"+{example.country_code}{head}{rng.randrange(10_000):04d}")
                    for _ in range(3)
                ]
                if all(phonenumbers.is_valid_number(c) for c in (candidate, *checks)):
                    found.add(phonenumbers.format_number(candidate, PhoneNumberFormat.E164)[:-4])
                if len(found) >= 64:
                    break
        if not found:
            raise ValueError(f"region {region!r}: no example numbers to generate from")
        self.prefixes[region] = sorted(found)
        return self.prefixes[region]
