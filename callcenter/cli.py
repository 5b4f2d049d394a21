"""``callcenter``: the command line.

callcenter demo        backend + PBX simulator + generated callers, on embedded defaults
callcenter run         backend against the configured Asterisk
callcenter pbx-sim     the PBX simulator alone (AMI on TCP)
callcenter migrate     apply the database migrations
callcenter replay F    run a recorded capture (.jsonl/.raw) through the call model
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from acd.events import AcdEvent
from acd.figures import QueueFigures
from callcenter.settings import ConfigError, Settings, load_settings, require_production_secrets
from cti.calls.events import DeviceStateChanged, PbxEvent


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"callcenter: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level or settings.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if (args.log_level or settings.log_level) != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.command(args, settings) or 0)
    except ConfigError as exc:
        print(f"callcenter: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="callcenter", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--config",
        type=Path,
        help="YAML file (default: $CALLCENTER_CONFIG or config/callcenter.yaml when present)",
    )
    ap.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = ap.add_subparsers(required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="backend + PBX simulator + generated callers")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--calls-per-minute", type=float, help="override the traffic rate")
    demo.add_argument("--seed", type=int, help="repeatable traffic")
    demo.add_argument("--port", type=int, help="simulator AMI port (0: any free port)")
    demo.set_defaults(command=_demo)

    run = sub.add_parser("run", help="backend against the configured Asterisk")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.set_defaults(command=_run)

    sim = sub.add_parser("pbx-sim", help="the PBX simulator alone")
    sim.add_argument("--port", type=int, help="AMI port (0: any free port)")
    sim.add_argument("--calls-per-minute", type=float, help="generated callers (0: none)")
    sim.add_argument("--seed", type=int)
    sim.set_defaults(command=_pbx_sim)

    mig = sub.add_parser("migrate", help="apply the database migrations")
    mig.set_defaults(command=_migrate)

    rep = sub.add_parser("replay", help="run a recorded capture through the call model")
    rep.add_argument("capture", type=Path, help="a .jsonl or .raw file of shared/ami-captures")
    rep.set_defaults(command=_replay)
    return ap


# -- commands ------------------------------------------------------------------------------


#: Seconds between the live queue figures the console prints.
FIGURES_EVERY = 10.0


def _install_reactor() -> Any:
    """The asyncio reactor, so asyncio libraries share the loop (see architecture.md)."""
    from twisted.internet import asyncioreactor

    if "twisted.internet.reactor" not in sys.modules:
        asyncioreactor.install()
    from twisted.internet import reactor

    return reactor


def _simulator_settings(settings: Settings, args: argparse.Namespace) -> Any:
    import pbx_simulator

    sim = settings.simulator
    traffic = sim.traffic
    rate = args.calls_per_minute if args.calls_per_minute is not None else traffic.calls_per_minute
    seed = args.seed if args.seed is not None else traffic.seed
    return pbx_simulator.Settings(
        host=sim.host,
        port=args.port if args.port is not None else sim.port,
        username=settings.ami.username,
        secret=settings.ami.secret.get_secret_value(),
        seed=seed if seed is not None else 0,
        traffic=pbx_simulator.TrafficSettings(
            enabled=traffic.enabled and rate > 0,
            calls_per_minute=rate if rate > 0 else traffic.calls_per_minute,
            mean_patience=traffic.mean_patience,
            mean_handle_time=traffic.mean_handle_time,
            dids=traffic.dids,
            customers_csv=traffic.customers,
        ),
    )


def _pbx_sim(args: argparse.Namespace, settings: Settings) -> int:
    import pbx_simulator

    reactor = _install_reactor()
    port = pbx_simulator.serve(reactor, _simulator_settings(settings, args))
    host = port.getHost()
    print(f"PBX simulator: AMI listening on {host.host}:{host.port}", flush=True)
    reactor.run()
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    import pbx_simulator

    reactor = _install_reactor()
    port = pbx_simulator.serve(reactor, _simulator_settings(settings, args))
    host = port.getHost()
    settings = settings.model_copy(
        update={"ami": settings.ami.model_copy(update={"host": host.host, "port": host.port})}
    )
    print(
        f"PBX simulator: AMI on {host.host}:{host.port} "
        f"(user {settings.ami.username}; try: nc {host.host} {host.port})\n"
        f"Call history: {settings.database.display_url()}\n"
        "Live call events follow; Ctrl-C stops.",
        flush=True,
    )
    return _serve(reactor, settings, args.duration)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    require_production_secrets(settings)
    return _serve(_install_reactor(), settings, args.duration)


def _serve(reactor: Any, settings: Settings, duration: float | None) -> int:
    from twisted.internet.task import LoopingCall

    from callcenter.app import CallCenter

    app = CallCenter(settings, reactor)
    tally: Counter[str] = Counter()

    def show(event: Any) -> None:
        tally[event.kind] += 1
        print(describe(event), flush=True)

    app.watch(show, "console")
    if app.acd is not None:
        acd = app.acd
        acd.events.subscribe(lambda e: print(describe_acd(e), flush=True), name="console")
        figures = LoopingCall(
            lambda: [
                print(describe_figures(f), flush=True) for f in acd.snapshot(reactor.seconds())
            ]
        )
        figures.clock = reactor
        figures.start(FIGURES_EVERY, now=False)
    app.start()
    reactor.addSystemEventTrigger("before", "shutdown", app.stop)
    if duration is not None:
        reactor.callLater(duration, reactor.stop)
    reactor.run()
    print(
        "summary: "
        + ", ".join(f"{k} {tally[k]}" for k in ("arrived", "answered", "abandoned", "ended")),
        flush=True,
    )
    return _history_exit_code(app.history_closed)


def _history_exit_code(closed: list[Any]) -> int:
    """0 when every history event is in the database or kept in a spool for the next start;
    1 when some could not be kept, or the histories were never closed."""
    if closed and all(c.all_kept for c in closed):
        return 0
    lost = sum(c.lost for c in closed)
    what = f"{lost} history events were lost" if closed else "the histories were not closed"
    print(f"callcenter: {what} at shutdown (see the log)", file=sys.stderr, flush=True)
    return 1


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.app import open_database

    migrated = settings.model_copy(
        update={"database": settings.database.model_copy(update={"migrate_on_start": True})}
    )
    open_database(migrated).dispose()
    print(f"database {settings.database.display_url()} is at the newest schema")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.app import numbering_plan
    from cti.calls.model import CallModel
    from cti.capture import replay

    if not args.capture.is_file():
        print(f"callcenter replay: {args.capture}: no such file", file=sys.stderr)
        return 2
    for event in replay(args.capture, CallModel(plan=numbering_plan(settings))):
        print(describe(event))
    return 0


def describe(event: PbxEvent) -> str:
    """One readable line per call event (or agent device state), for the console."""
    import time

    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    if isinstance(event, DeviceStateChanged):
        return f"{stamp} {'device':<22} {event.state:<12} {event.interface}"
    fields = event.to_record()
    fields.pop("kind"), fields.pop("call_id"), fields.pop("at")
    shown = {k: v for k, v in fields.items() if v not in (None, "", {}, False)}
    detail = " ".join(f"{k}={_short(v)}" for k, v in shown.items())
    return f"{stamp} {event.call_id:<22} {event.kind:<12} {detail}"


def describe_acd(event: AcdEvent) -> str:
    """One line per ACD event (a caller joining, an agent's new state...)."""
    import time

    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    fields = event.to_record()
    kind = fields.pop("kind")
    fields.pop("at")
    detail = " ".join(f"{k}={_short(v)}" for k, v in fields.items() if v not in (None, "", ()))
    return f"{stamp} ACD {kind:<18} {detail}"


def describe_figures(f: QueueFigures) -> str:
    """A supervisor's line for one queue: waiting, agents, today's service figures."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    def sec(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f}s"

    t = f.today
    return (
        f"[{f.queue}] waiting {f.calls_waiting} (longest {sec(f.longest_wait)}), agents "
        f"{f.agents_available} free/{f.agents_busy} busy/{f.agents_paused} paused; today: "
        f"answered {t.answered}, abandoned {t.abandoned}, SL{f.service_threshold:.0f}s "
        f"{pct(t.service_level)}, ASA {sec(t.asa)}, AHT {sec(t.aht)}, "
        f"abandon {pct(t.abandonment_rate)}, occupancy {pct(t.occupancy)}"
    )


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k}={v}" for k, v in value.items() if v is not None) + ")"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
