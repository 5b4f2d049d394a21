"""Tier recompute benchmark: every customer's profile from the database (issue 14; goal:
100,000 customers and 1,000,000 orders in PostgreSQL in under 60 s).

    python -m bench.tier_recompute --customers 100000 --orders 1000000 \\
        --database-url postgresql+psycopg://user:pass@host/db

Without ``--database-url`` the ``CALLCENTER_BENCH_POSTGRES_URL`` environment variable is
used. The database's ``public`` schema is DROPPED and re-created, then migrated; the data
come from :func:`crm_bridge.generator.generate` (``callcenter customers generate``), with
``--seed``. Then ``--runs`` bulk recomputes (:func:`crm_bridge.recompute.recompute_all`)
with the batched PostgreSQL write, one with the portable executemany write for comparison
(unless ``--no-executemany``), and an incremental pass over 1% of the customers
(:func:`crm_bridge.recompute.recompute_changed`). Each prints its seconds and their parts.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Literal

from sqlalchemy import Engine, create_engine, select, text, update

import migrations
from crm_bridge.config import ProfileRules
from crm_bridge.generator import generate
from crm_bridge.recompute import RecomputeSummary, recompute_all, recompute_changed
from crm_bridge.schema import customers

#: The data's "now": the generated histories end here.
NOW = 1_780_000_000.0


def _fresh(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name != "postgresql":
        raise SystemExit(f"--database-url: PostgreSQL expected, got {engine.dialect.name}")
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    migrations.upgrade(url)
    return engine


def _show(what: str, summary: RecomputeSummary) -> None:
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in summary.parts.items())
    tiers = ", ".join(f"{t} {n:,}" for t, n in summary.tiers.items())
    print(f"{what}: {summary.customers:,} customers in {summary.seconds:.1f} s ({parts}); {tiers}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=2, help="bulk runs with the batched write")
    parser.add_argument("--no-executemany", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("CALLCENTER_BENCH_POSTGRES_URL"))
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("give --database-url or set CALLCENTER_BENCH_POSTGRES_URL (its public "
                     "schema is dropped)")  # fmt: skip
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")  # fmt: skip
    engine = _fresh(args.database_url)
    started = time.monotonic()
    made = generate(engine, args.customers, args.orders, seed=args.seed, now=NOW, region="DE")
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    print(f"{made} (with ANALYZE: {time.monotonic() - started:.1f} s)")
    rules = ProfileRules()
    modes: list[tuple[str, Literal["auto", "executemany"]]] = [
        (f"bulk run {i + 1} (one UPDATE per batch)", "auto") for i in range(args.runs)
    ]
    if not args.no_executemany:
        modes.append(("bulk run (executemany UPDATE)", "executemany"))
    for what, mode in modes:
        _show(what, recompute_all(engine, NOW, rules, update_with=mode))
        sys.stdout.flush()
    with engine.begin() as conn:
        ids = list(conn.execute(select(customers.c.id).order_by(customers.c.id)).scalars())
        changed = ids[::100]  # 1% of the customers
        conn.execute(
            update(customers).where(customers.c.id.in_(changed)).values(changed_at=NOW + 1)
        )
    started = time.monotonic()
    done = recompute_changed(engine, NOW + 2, rules, since=NOW + 1)
    print(f"incremental: {done:,} changed customers in {time.monotonic() - started:.2f} s")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
