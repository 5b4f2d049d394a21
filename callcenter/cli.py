"""The callcenter command: a call-center backend for Asterisk, and its PBX simulator.

  callcenter demo          backend + PBX simulator + generated callers, on embedded defaults
  callcenter run           backend against the configured Asterisk
  callcenter pbx-sim       the PBX simulator alone (AMI on TCP)
  callcenter migrate       apply the database migrations
  callcenter replay FILE   run a recorded capture (.jsonl/.raw) through the call model
  callcenter users add|list  the API's accounts (agents, supervisors, admins)
  callcenter customers import|generate   customers from CSV files, or generated ones
  callcenter tiers recompute  customers' value tiers and profiles
  callcenter pops --agent U  an agent's screen pops, live
  callcenter asterisk dialplan|import-queues  extensions.conf from the configuration;
                           queues.yaml from an app_queue queues.conf
  callcenter ivr check FILE...|draw FILE  IVR flows: checked in full, or drawn as a graph

Settings come from --config, else $CALLCENTER_CONFIG, else config/callcenter.yaml when
present, else built-in defaults; any key can be set as CALLCENTER_<SECTION>__<KEY>
(e.g. CALLCENTER_AMI__SECRET). "callcenter COMMAND --help" shows a command's options.
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
from cti.ami.client import LinkState
from cti.calls.events import (
    AsyncAgiEnded,
    AsyncAgiReplied,
    AsyncAgiStarted,
    DeviceStateChanged,
    PbxEvent,
)
from ivr.events import IvrEvent, IvrFinished
from tickets.events import TicketEvent

#: The built-in settings, for the defaults --help shows.
_BUILT_IN = Settings()


class CommandError(Exception):
    """A command that cannot run as asked; the message says why and what to do instead."""


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
    except CommandError as exc:
        print(f"callcenter {args.command_name}: {exc}", file=sys.stderr)
        return 2


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, and each option's default where it has one of its own (an
    option that defaults to a setting says so in its help)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _setting(key: str) -> str:
    """``(default: setting KEY, VALUE unless configured)``: an option whose default is a
    setting of the configuration."""
    value: Any = _BUILT_IN
    for part in key.split("."):
        value = getattr(value, part)
    shown = "none" if value is None else value
    return f"(default: setting {key}, {shown} unless configured)"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="callcenter", description=__doc__, formatter_class=_HelpFormatter
    )
    ap.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML file (default: $CALLCENTER_CONFIG, else config/callcenter.yaml when present, "
        "else built-in defaults)",
    )
    ap.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help=_setting("log_level")
    )
    sub = ap.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run: Any, summary: str, description: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name, help=summary, description=description, formatter_class=_HelpFormatter
        )
        parser.set_defaults(command=run, command_name=name)
        return parser

    def served(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--duration",
            type=float,
            metavar="SECONDS",
            help="stop after this many seconds (default: run until Ctrl-C)",
        )
        parser.add_argument(
            "--figures-every",
            type=float,
            default=FIGURES_EVERY,
            metavar="SECONDS",
            help="seconds between each queue's figures line (0: none)",
        )

    def simulated(parser: argparse.ArgumentParser, rate_help: str, port_help: str) -> None:
        """The simulator's options, shared by ``demo`` and ``pbx-sim``."""
        parser.add_argument(
            "--calls-per-minute",
            type=float,
            metavar="RATE",
            help=f"{rate_help} " + _setting("simulator.traffic.calls_per_minute"),
        )
        parser.add_argument(
            "--seed",
            type=int,
            metavar="N",
            help="repeatable traffic; none: seed 0 " + _setting("simulator.traffic.seed"),
        )
        parser.add_argument("--port", type=int, help=f"{port_help} " + _setting("simulator.port"))

    demo = command(
        "demo",
        _demo,
        "backend + PBX simulator + generated callers",
        "The backend, the PBX simulator and generated callers in one process, on the\n"
        "configuration's settings; every call event, ACD event and queue figure is printed\n"
        "(README.md has a legend of the lines).",
    )
    served(demo)
    simulated(demo, "generated callers a minute", "simulator AMI port, 0: any free port")

    run = command(
        "run",
        _run,
        "backend against the configured Asterisk",
        "The backend against the Asterisk of the configuration (ami.host, ami.port). While\n"
        "the PBX cannot be reached, a WARNING says why and the figures lines say so.",
    )
    served(run)

    sim = command(
        "pbx-sim",
        _pbx_sim,
        "the PBX simulator alone",
        "The PBX simulator alone, speaking AMI on TCP for other clients.",
    )
    simulated(sim, "generated callers, 0: none", "AMI port, 0: any free port")

    command(
        "migrate",
        _migrate,
        "apply the database migrations",
        "Apply the database migrations (Alembic upgrade head) to database.url.",
    )

    rep = command(
        "replay",
        _replay,
        "run a recorded capture through the call model",
        "Run a recorded AMI capture through the call model and print its call events, then\n"
        "a summary line. Exits 1 if the file is not a capture or holds no AMI messages.",
    )
    rep.add_argument(
        "capture", type=Path, metavar="FILE", help="a .jsonl or .raw capture (see tests/captures)"
    )

    pops = command(
        "pops",
        _pops,
        "an agent's screen pops, live",
        "Log in to the API as an agent and print each screen pop the agent gets, live (the\n"
        "pop of the call in progress first). The password is read from $AGENT_PASSWORD,\n"
        "else asked for. Reconnects by itself while the backend is away.",
    )
    pops.add_argument("--agent", required=True, metavar="USER", help="the agent's user name")
    pops.add_argument(
        "--url", metavar="URL", help="the API (default: http://http.host:http.port of the settings)"
    )
    pops.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this many seconds"
    )
    tiers = command(
        "tiers",
        _tiers_recompute,
        "customer value tiers and profiles",
        "Customer profiles: value tier, loyalty, lifecycle, lifetime value (README.md,\n"
        "section Customer tiers).",
    ).add_subparsers(required=True, metavar="ACTION")
    recompute = tiers.add_parser(
        "recompute",
        help="recompute every customer's profile",
        description="Fill the contacts from the call history, then profile every customer\n"
        "against the rules of crm.rules and store a new tier run (a progress bar on stderr).\n"
        "With --changed-since, only the customers changed in the last SECONDS seconds,\n"
        "against the latest run (exits 2 when there is none yet).",
        formatter_class=_HelpFormatter,
    )
    recompute.set_defaults(command=_tiers_recompute, command_name="tiers recompute")
    recompute.add_argument(
        "--changed-since",
        type=float,
        metavar="SECONDS",
        help="only customers with an order or contact in the last SECONDS seconds",
    )

    people = command(
        "customers",
        _customers_import,
        "import or generate customers",
        "Customers, their numbers and orders (README.md, section Customers).",
    ).add_subparsers(required=True, metavar="ACTION")

    def customers_action(name: str, run: Any, summary: str) -> argparse.ArgumentParser:
        parser = people.add_parser(
            name, help=summary.split(",")[0], description=summary, formatter_class=_HelpFormatter
        )
        parser.set_defaults(command=run, command_name=f"customers {name}")
        return parser

    imp = customers_action(
        "import",
        _customers_import,
        "Import customers, and their orders, from CSV files (README.md, section Customers):\n"
        "all or nothing, every bad row reported with its line. Exits 1 on a bad file.",
    )
    imp.add_argument("customers_csv", type=Path, metavar="FILE.csv", help="the customers file")
    imp.add_argument("--orders", type=Path, metavar="FILE.csv", help="an orders file")
    gen = customers_action(
        "generate",
        _customers_generate,
        "Generate customers, numbers, orders and contacts, for demos and benchmarks: names\n"
        "from many countries, every tier, loyalty class and lifecycle stage.",
    )
    gen.add_argument("--customers", type=int, required=True, metavar="N")
    gen.add_argument("--orders", type=int, required=True, metavar="M")
    gen.add_argument("--seed", type=int, default=1, metavar="S", help="the same data again")

    users = command(
        "users",
        _users_list,
        "the API's accounts",
        "Accounts of the agent and supervisor API, in database.url (migrated first).",
    ).add_subparsers(required=True, metavar="ACTION")
    add = users.add_parser(
        "add",
        help="add an account",
        description="Add an account. The password is asked twice (or read from one line of\n"
        "standard input with --password-stdin): at least 8 characters.",
        formatter_class=_HelpFormatter,
    )
    add.set_defaults(command=_users_add, command_name="users add")
    add.add_argument("username", metavar="USERNAME")
    add.add_argument("--role", required=True, choices=["agent", "supervisor", "admin"])
    add.add_argument("--agent", metavar="AGENT", help="the ACD agent an agent account acts as")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    listed = users.add_parser("list", help="list the accounts", formatter_class=_HelpFormatter)
    listed.set_defaults(command=_users_list, command_name="users list")
    _asterisk_commands(command)
    _ivr_commands(command)
    return ap


def _ivr_commands(command: Any) -> None:
    """``callcenter ivr check FILE...`` and ``callcenter ivr draw FILE``."""
    ivr = command(
        "ivr",
        _ivr_check,
        "IVR flows: check, draw",
        "IVR flow files (config/ivr/*.yaml; the language is described in ivr/flow.py).",
    ).add_subparsers(required=True, metavar="ACTION")
    queues_help = "the ACD queues file the flows route to (default: setting acd.queues)"
    check = ivr.add_parser(
        "check",
        help="check flow files",
        description="Check flow files together (sub-flows and gotos may cross them) against\n"
        "the ACD's queues: every problem on its own line, naming the file, the node and the\n"
        "fix. Exits 0 when they are all fine, 1 otherwise.",
        formatter_class=_HelpFormatter,
    )
    check.set_defaults(command=_ivr_check, command_name="ivr check")
    check.add_argument("files", type=Path, nargs="+", metavar="FILE")
    check.add_argument("--queues", type=Path, metavar="FILE", help=queues_help)
    draw = ivr.add_parser(
        "draw",
        help="print a flow file as a graph",
        description="Print the flows of FILE as a graph (Graphviz dot or Mermaid). The other\n"
        "flow files of its directory are loaded too, for the sub-flows it calls. Exits 1,\n"
        "with the problems, when the flows do not check.",
        formatter_class=_HelpFormatter,
    )
    draw.set_defaults(command=_ivr_draw, command_name="ivr draw")
    draw.add_argument("file", type=Path, metavar="FILE")
    draw.add_argument("--format", choices=["dot", "mermaid"], default="dot")
    draw.add_argument("--queues", type=Path, metavar="FILE", help=queues_help)


def _asterisk_commands(command: Any) -> None:
    """``callcenter asterisk dialplan|import-queues`` (README.md, section Asterisk files)."""
    pbx = command(
        "asterisk",
        _asterisk_dialplan,
        "Asterisk configuration from and for the product's",
        "Asterisk configuration: the dialplan the product needs, from its configuration;\n"
        "an app_queue queues.conf as the ACD's queues file.",
    ).add_subparsers(required=True, metavar="ACTION")
    plan = pbx.add_parser(
        "dialplan",
        help="print the extensions.conf contexts the product needs",
        description="Print the extensions.conf contexts the product needs, generated from the\n"
        "configuration and its queues file (acd.queues): inbound DIDs, holding lanes, the\n"
        "callback offer and confirmation, voicemail, outbound callbacks, agents. Notes on\n"
        "stderr (and in the output's header) name calls.holding entries to add.",
        formatter_class=_HelpFormatter,
    )
    plan.set_defaults(command=_asterisk_dialplan, command_name="asterisk dialplan")
    # Also after the action, as the issue writes it; SUPPRESS keeps a --config given before.
    plan.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="YAML file, as the global --config",
    )
    plan.add_argument(
        "--silent",
        action="append",
        default=[],
        metavar="LANE",
        help="a lane whose callers wait in silence (default: music on hold)",
    )
    plan.add_argument(
        "--outbound-dial",
        default="PJSIP/${EXTEN}@trunk",
        metavar="DIAL",
        help="how callbacks dial the customer (${EXTEN}: the number)",
    )
    plan.add_argument(
        "--agent-device",
        default="PJSIP/{agent}",
        metavar="DEVICE",
        help="what a Local/<agent>@<context> agent interface rings",
    )
    imp = pbx.add_parser(
        "import-queues",
        help="turn an app_queue queues.conf into the ACD's queues.yaml",
        description="Turn an app_queue queues.conf (queues, strategies, members, penalties)\n"
        "into a queues.yaml the ACD loads; what has no equivalent is reported on stderr with\n"
        "its file:line. A bad line exits 1 and writes nothing.",
        formatter_class=_HelpFormatter,
    )
    imp.set_defaults(command=_asterisk_import_queues, command_name="asterisk import-queues")
    imp.add_argument("queues_conf", type=Path, metavar="queues.conf")
    imp.add_argument(
        "--members",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a .conf file of more 'member =>' lines, in sections named after the queues "
        "(repeatable)",
    )
    imp.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write queues.yaml there (default: standard output)",
    )


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
    from callcenter.demo import fastagi_routes

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
        agent_ring_seconds=sim.agent_ring_seconds,
        # DID 5004's FastAGI script reaches this configuration's FastAGI server.
        dids=fastagi_routes(
            pbx_simulator.Settings().dids, settings.ivr.fastagi_host, settings.ivr.fastagi_port
        ),
        traffic=pbx_simulator.TrafficSettings(
            enabled=traffic.enabled and rate > 0,
            calls_per_minute=rate if rate > 0 else traffic.calls_per_minute,
            mean_patience=traffic.mean_patience,
            mean_handle_time=traffic.mean_handle_time,
            dids=traffic.dids,
            customers_csv=traffic.customers,
        ),
    )


def _listen(reactor: Any, settings: Settings, args: argparse.Namespace) -> Any:
    """The simulator's listening port; :class:`CommandError` when it cannot listen (the
    port taken, most often by another simulator or an Asterisk)."""
    from twisted.internet.error import CannotListenError

    import pbx_simulator

    sim = _simulator_settings(settings, args)
    try:
        return pbx_simulator.serve(reactor, sim)
    except CannotListenError as exc:
        error = exc.socketError
        reason = getattr(error, "strerror", None) or str(error)
        raise CommandError(
            f"the PBX simulator cannot listen on {sim.host}:{sim.port} ({reason}); another "
            "simulator or an Asterisk may be using it: use --port 0 for any free port, or "
            "--port N for another"
        ) from None


def _pbx_sim(args: argparse.Namespace, settings: Settings) -> int:
    reactor = _install_reactor()
    port = _listen(reactor, settings, args)
    host = port.getHost()
    print(f"PBX simulator: AMI listening on {host.host}:{host.port}", flush=True)
    reactor.run()
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.demo import demo_ivr

    reactor = _install_reactor()
    # Before the simulator: its FastAGI DID dials the IVR's port.
    settings, ivr_notes = demo_ivr(settings)
    port = _listen(reactor, settings, args)
    settings = _demo_api_port(settings)
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
    for note in ivr_notes:
        print(note, flush=True)
    return _serve(reactor, settings, args.duration, args.figures_every, demo=True)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    require_production_secrets(settings)
    return _serve(_install_reactor(), settings, args.duration, args.figures_every)


def _serve(
    reactor: Any,
    settings: Settings,
    duration: float | None,
    figures_every: float = FIGURES_EVERY,
    *,
    demo: bool = False,
) -> int:
    from twisted.internet.task import LoopingCall

    from callcenter.app import CallCenter, freeze_start_up

    app = CallCenter(settings, reactor)
    tally: Counter[str] = Counter()

    def show(event: Any) -> None:
        tally[event.kind] += 1
        if isinstance(event, AsyncAgiStarted | AsyncAgiReplied | AsyncAgiEnded):
            return  # each AGI command's reply: the IVR's own lines say what the caller did
        print(describe(event), flush=True)

    app.watch(show, "console")
    if app.acd is not None:
        acd = app.acd
        acd.events.subscribe(lambda e: print(describe_acd(e), flush=True), name="console")

        def show_figures() -> None:
            # Without the PBX the ACD's view is stale: agents would show free that are not.
            state, problem = app.ami.state, app.ami.problem
            for f in acd.snapshot(reactor.seconds()):
                line = (
                    describe_figures(f)
                    if state is LinkState.READY
                    else describe_pbx_down(f.queue, state, problem)
                )
                print(line, flush=True)

        if figures_every > 0:
            figures = LoopingCall(show_figures)
            figures.clock = reactor
            figures.start(figures_every, now=False)
    if app.ivr is not None:
        app.ivr.events.subscribe(lambda e: print(describe_ivr(e), flush=True), name="console")
    app.tickets.events.subscribe(lambda e: print(describe_ticket(e), flush=True), name="console")
    logins = _demo_logins(app) if demo else []
    app.start()
    if demo:
        _seed_demo_customers(app)
    if app.api is not None:
        url = f"http://{app.api.host}:{app.api.port}"
        print(f"Pages: {url}/ (agents: /agent, supervisors: /wallboard)", flush=True)
        print(f"Agent API: {url}/api/docs", flush=True)
        _print_logins(logins, url)
    reactor.addSystemEventTrigger("before", "shutdown", app.stop)
    if duration is not None:
        reactor.callLater(duration, reactor.stop)
    freeze_start_up()
    reactor.run()
    print(
        "summary: "
        + ", ".join(f"{k} {tally[k]}" for k in ("arrived", "answered", "abandoned", "ended")),
        flush=True,
    )
    return _history_exit_code(app.history_closed)


def _demo_logins(app: Any) -> list[Any]:
    """The sample agents' and a supervisor's log-ins, fresh this run (see callcenter.demo)."""
    from sqlalchemy.exc import SQLAlchemyError

    from callcenter.demo import demo_logins

    if app.api is None or app.acd is None:
        return []
    try:
        return demo_logins(app.accounts, app.acd.config.agents)
    except SQLAlchemyError as exc:
        print(f"Demo log-ins not made ({_database_problem(exc)})", flush=True)
        return []


def _seed_demo_customers(app: Any) -> None:
    """The first time, the demo's customers, on a thread while the calls begin; the pops
    and the ACD's tiers use them as soon as they are there."""
    from twisted.internet.threads import deferToThread

    from callcenter.demo import seed_customers
    from pbx_simulator.traffic import load_customers

    callers = [(c.name, c.number) for c in load_customers(app.settings.simulator.traffic.customers)]
    crm = app.crm

    def seeded(written: int) -> None:
        if written:
            print(f"Demo customers: {written:,} generated, profiles computed", flush=True)
            crm.refresh_tiers()

    def failed(failure: Any) -> None:
        # The demo runs on without them: calls, the ACD and history do not need them.
        print(f"Demo customers not generated ({_database_problem(failure.value)})", flush=True)

    deferToThread(
        seed_customers, app.engine, callers, region=crm.settings.default_region, rules=crm.rules
    ).addCallbacks(seeded, failed)


def _database_problem(exc: BaseException) -> str:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
    return f"database: {reason}" if reason else type(exc).__name__


def _print_logins(logins: list[Any], url: str) -> None:
    """The sample log-ins, and the command that shows an agent's pops live."""
    if not logins:
        return
    print(f"Log-ins for this run at {url}/ (passwords are new each run):", flush=True)
    for login in logins:
        print(f"  {login.role:<10} {login.username:<11} password {login.password}", flush=True)
    agent = next(login for login in logins if login.role == "agent")
    print(
        f"Screen pops of agent {agent.username}, live, in another terminal:\n"
        f"  AGENT_PASSWORD='{agent.password}' .venv/bin/callcenter pops "
        f"--agent {agent.username} --url {url}",
        flush=True,
    )


def _demo_api_port(settings: Settings) -> Settings:
    """The demo's API port: ``http.port``, or any free one when that is taken (another demo
    or backend): the demo runs anyway and prints where the API is."""
    import os
    import socket

    http = settings.http
    if not http.enabled or http.port == 0:
        return settings
    try:
        family = socket.AF_INET6 if ":" in http.host else socket.AF_INET
        socket.create_server((http.host, http.port), family=family).close()
    except OSError as exc:
        print(
            f"HTTP port {http.host}:{http.port} is taken ({os.strerror(exc.errno or 0)}): the API "
            "listens on a free port instead",
            flush=True,
        )
        return settings.model_copy(update={"http": http.model_copy(update={"port": 0})})
    return settings


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


def _pops(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import getpass
    import os

    from callcenter.pops import PopClientError, describe_pop, follow_pops, log_in

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request

    url = (args.url or f"http://{settings.http.host}:{settings.http.port}").rstrip("/")
    password = os.environ.get("AGENT_PASSWORD")
    if not password:
        try:
            password = getpass.getpass(f"password of {args.agent}: ")
        except EOFError:
            raise CommandError(
                "no password: set AGENT_PASSWORD or run it in a terminal to be asked"
            ) from None

    def show(pop: Any) -> None:
        if pop.get("kind") == "connected":
            print(f"connected to {url} as agent {pop.get('agent')}; pops follow", flush=True)
        elif pop.get("kind") == "disconnected":
            print(f"backend away ({pop.get('reason')}); reconnecting", flush=True)
        else:
            print(describe_pop(pop), flush=True)

    try:
        token = log_in(url, args.agent, password)
        asyncio.run(follow_pops(url, token, show, duration=args.duration))
    except PopClientError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    return 0


def _users_add(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.app import open_database
    from web.accounts import AccountError, Accounts

    if args.role == "agent" and settings.acd.queues is not None and args.agent:
        from acd.config import load_acd_config
        from acd.errors import AcdConfigError

        try:
            known = load_acd_config(settings.acd.queues).agents
        except AcdConfigError:
            known = None  # the queues file has its own error at start; the account is fine
        if known is not None and args.agent not in known:
            raise CommandError(
                f"--agent: agent {args.agent!r} is not in the ACD configuration "
                f"({settings.acd.queues}); its agents: {', '.join(sorted(known)) or 'none'}"
            )
    password = _new_password(args.password_stdin)
    engine = open_database(_migrated(settings))
    try:
        account = Accounts(engine).add(args.username, password, args.role, args.agent)
    except AccountError as exc:
        flag = {"username": "USERNAME", "password": "password"}.get(exc.field, f"--{exc.field}")
        raise CommandError(f"{flag}: {exc.problem}") from None
    finally:
        engine.dispose()
    acting = f", ACD agent {account.agent}" if account.agent else ""
    print(f"account {account.username} added (role {account.role}{acting})")
    return 0


def _new_password(from_stdin: bool) -> str:
    """One line of standard input, or the password typed twice (not echoed)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        raise CommandError("password: the two passwords differ; nothing was added")
    return password


def _users_list(args: argparse.Namespace, settings: Settings) -> int:
    import datetime

    from callcenter.app import open_database
    from web.accounts import Accounts

    engine = open_database(_migrated(settings))
    try:
        records = Accounts(engine).list()
    finally:
        engine.dispose()
    if not records:
        print("no accounts: add one with 'callcenter users add USERNAME --role ROLE'")
    for r in records:
        created = datetime.datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M")
        flags = "  disabled" if r.disabled else ""
        print(f"{r.username:<24} {r.role:<10} {r.agent or '-':<8} {created}{flags}")
    return 0


def _migrated(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"database": settings.database.model_copy(update={"migrate_on_start": True})}
    )


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from callcenter.app import numbering_plan
    from cti.calls.model import CallModel
    from cti.capture import CaptureError, read, replay

    path: Path = args.capture
    if not path.is_file():
        print(f"callcenter replay: {path}: no such file", file=sys.stderr)
        return 2
    try:
        records = list(read(path))
    except CaptureError as exc:
        print(f"callcenter replay: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"callcenter replay: {path}: cannot read it ({exc.strerror})", file=sys.stderr)
        return 1
    messages = sum(1 for r in records if r.message.kind in ("event", "response"))
    if not messages:
        print(
            f"callcenter replay: {path}: no AMI messages in it (no event or response); a "
            "capture is a .jsonl or .raw recording of an AMI session (see tests/captures)",
            file=sys.stderr,
        )
        return 1
    calls = CallModel(plan=numbering_plan(settings))
    events = replay(records, calls)
    for event in events:
        print(describe(event))
    connections = len({r.connection for r in records})
    print(replay_summary(messages, connections, events))
    return 0


def _tiers_recompute(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from callcenter.app import open_database
    from crm_bridge.config import load_profile_rules
    from crm_bridge.contacts import fill_contacts
    from crm_bridge.errors import CrmConfigError
    from crm_bridge.importer import ProgressBar
    from crm_bridge.pyramid import describe as describe_cutoffs
    from crm_bridge.recompute import NoTierRun, recompute_all, recompute_changed

    since = args.changed_since
    if since is not None and since < 0:
        raise CommandError(f"--changed-since: must be 0 or more seconds, got {since:g}")
    try:
        rules = load_profile_rules(settings.crm.rules)
    except CrmConfigError as exc:
        key = "key 'crm.rules' (CALLCENTER_CRM__RULES)" if exc.setting else None
        raise CommandError(exc.message(key)) from None
    migrated = settings.model_copy(
        update={"database": settings.database.model_copy(update={"migrate_on_start": True})}
    )
    engine = open_database(migrated)
    bar = ProgressBar(sys.stderr)
    try:
        filled = fill_contacts(engine)
        if filled.added:
            print(f"{filled.added:,} new contacts from the call history")
        now = time.time()
        if since is not None:
            started = time.monotonic()
            try:
                done = recompute_changed(engine, now, rules, since=now - since)
            except NoTierRun as exc:
                raise CommandError(str(exc)) from None
            took = time.monotonic() - started
            print(f"re-profiled {done:,} customers changed in the last {since:g} s in {took:.1f} s")
            return 0
        summary = recompute_all(
            engine, now, rules, progress=lambda done, total: bar("profiling", done, total)
        )
    finally:
        bar.close()
        engine.dispose()
    tiers = ", ".join(f"{tier} {n:,}" for tier, n in summary.tiers.items())
    print(
        f"profiled {summary.customers:,} customers in {summary.seconds:.1f} s: {tiers} "
        f"(tier run {summary.run_id})"
    )
    print(describe_cutoffs(summary.cutoffs))
    return 0


#: Problems of a rejected import shown; the rest are counted.
SHOWN_PROBLEMS = 50


def _customer_region(settings: Settings) -> str:
    """Where customers' numbers without a country code are from: crm.default_region, else
    the region of numbering.country_code."""
    from crm_bridge.numbers import NumberError, check_region, region_for_country_code

    try:
        if settings.crm.default_region is not None:
            return check_region(settings.crm.default_region)
        return region_for_country_code(settings.numbering.country_code)
    except NumberError as exc:
        raise ConfigError(
            f"{exc}; check key 'crm.default_region' (CALLCENTER_CRM__DEFAULT_REGION)"
        ) from None


def _customers_import(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from callcenter.app import open_database
    from crm_bridge.errors import ImportRejected
    from crm_bridge.importer import ProgressBar, import_files

    region = _customer_region(settings)
    engine = open_database(settings)
    bar = ProgressBar()
    try:
        summary = import_files(
            engine, args.customers_csv, args.orders, region=region, now=time.time(), progress=bar
        )
    except ImportRejected as exc:
        bar.close()
        shown = exc.problems[:SHOWN_PROBLEMS]
        rest = len(exc.problems) - len(shown)
        shown += [f"... and {rest} more"] if rest else []
        print(
            f"callcenter customers import: nothing imported, {exc}:\n  " + "\n  ".join(shown),
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    for note in summary.notes[:SHOWN_PROBLEMS]:
        print(f"note: {note}")
    if len(summary.notes) > SHOWN_PROBLEMS:
        print(f"note: ... and {len(summary.notes) - SHOWN_PROBLEMS} more")
    print(summary)
    return 0


def _customers_generate(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from callcenter.app import open_database
    from crm_bridge.errors import DuplicateCustomer
    from crm_bridge.generator import generate
    from crm_bridge.importer import ProgressBar

    if args.customers < 0 or args.orders < 0 or (args.orders and not args.customers):
        raise CommandError("--customers and --orders: counts from 0, and orders need customers")
    region = _customer_region(settings)
    engine = open_database(settings)
    try:
        summary = generate(
            engine, args.customers, args.orders, seed=args.seed, now=time.time(), region=region,
            progress=ProgressBar(),
        )  # fmt: skip
    except DuplicateCustomer as exc:
        raise CommandError(
            f"{exc}: seed {args.seed} was generated before; use another --seed"
        ) from None
    finally:
        engine.dispose()
    print(summary)
    return 0


def _asterisk_dialplan(args: argparse.Namespace, settings: Settings) -> int:
    from acd.dialplan import DialplanError
    from acd.errors import AcdConfigError
    from callcenter.asterisk import generate_dialplan

    try:
        generated = generate_dialplan(
            settings,
            ivr_entries=settings.ivr.dialplan_entries(),
            fastagi=(settings.ivr.fastagi_host, settings.ivr.fastagi_port),
            silent_lanes=frozenset(args.silent),
            outbound_dial=args.outbound_dial,
            agent_device=args.agent_device,
        )
    except (AcdConfigError, DialplanError) as exc:
        raise CommandError(str(exc)) from None
    for note in generated.notes:
        print(f"note: {note}", file=sys.stderr)
    sys.stdout.write(generated.text)
    return 0


def _asterisk_import_queues(args: argparse.Namespace, settings: Settings) -> int:
    from acd.asterisk_queues import QueuesImportError
    from acd.errors import AcdConfigError
    from callcenter.asterisk import import_queues_file, write_whole
    from cti.asterisk_conf import AsteriskConfError

    try:
        result = import_queues_file(args.queues_conf, args.members)
    except (AsteriskConfError, QueuesImportError, AcdConfigError) as exc:
        print(f"callcenter asterisk import-queues: nothing written, {exc}", file=sys.stderr)
        return 1
    for item in result.unmapped:
        print(f"not mapped: {item}", file=sys.stderr)
    text = result.yaml_text(args.queues_conf.name)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_whole(args.output, text)
    queues, agents = len(result.data["queues"]), len(result.data.get("agents", {}))
    unmapped = len(result.unmapped)
    print(
        f"{queues} queues, {agents} agents imported; {unmapped} lines not mapped", file=sys.stderr
    )
    return 0


def _ivr_queues(args: argparse.Namespace, settings: Settings) -> Any:
    """The ACD's queues the flows may route to (``--queues``, else ``acd.queues``)."""
    from acd.config import load_acd_config
    from acd.errors import AcdConfigError

    path = args.queues or settings.acd.queues
    if path is None:
        raise CommandError(
            "no ACD queues file to check the flows' queues against: give --queues FILE or "
            "set acd.queues (CALLCENTER_ACD__QUEUES)"
        )
    try:
        return load_acd_config(path).queues
    except AcdConfigError as exc:
        raise CommandError(str(exc)) from None


def _ivr_check(args: argparse.Namespace, settings: Settings) -> int:
    from ivr.flow import FlowsInvalid, load_flows

    try:
        book = load_flows(args.files, queues=_ivr_queues(args, settings))
    except FlowsInvalid as exc:
        for error in exc.errors:
            print(error)
        count = len(exc.errors)
        print(f"{count} problem{'s' if count > 1 else ''}", file=sys.stderr)
        return 1
    names = ", ".join(book.flows)
    print(f"ok: {len(book.flows)} flows in {len(args.files)} files ({names})")
    return 0


def _ivr_draw(args: argparse.Namespace, settings: Settings) -> int:
    from ivr.draw import to_dot, to_mermaid
    from ivr.flow import FlowsInvalid, load_flows

    file: Path = args.file
    others = sorted(p for p in file.parent.glob("*.yaml") if p.resolve() != file.resolve())
    try:
        book = load_flows([file, *others], queues=_ivr_queues(args, settings))
    except FlowsInvalid as exc:
        for error in exc.errors:
            print(error)
        return 1
    mine = [f.name for f in book.flows.values() if f.file == str(file)]
    sys.stdout.write((to_mermaid if args.format == "mermaid" else to_dot)(book, mine))
    return 0


def replay_summary(messages: int, connections: int, events: list[Any]) -> str:
    """The last line of ``callcenter replay``: what went in and what the calls did."""

    def calls(kind: str | None = None) -> int:
        return len({e.call_id for e in events if kind is None or e.kind == kind})

    def count(n: int, noun: str) -> str:
        return f"{n} {noun}{'' if n == 1 else 's'}"

    return (
        f"replayed {count(messages, 'AMI message')} over {count(connections, 'connection')}: "
        f"{count(calls(), 'call')}, {calls('answered')} answered, "
        f"{calls('abandoned')} abandoned"
    )


def describe(event: PbxEvent) -> str:
    """One readable line per event of the call model, for the console: a call event (its
    call id first), an agent's device state, or what became of a leg the ACD originated."""
    import time

    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    if isinstance(event, DeviceStateChanged):
        return f"{stamp} {'device':<22} {event.state:<12} {event.interface}"
    fields = event.to_record()
    fields.pop("kind"), fields.pop("at"), fields.pop("restored", None)
    subject = fields.pop("call_id", None) or "leg"
    if isinstance(fields.get("caller"), dict):
        fields["caller"] = _caller(fields["caller"])
    shown = {k: v for k, v in fields.items() if v not in (None, "", {}, False)}
    if event.restored:
        shown["restored"] = True
    detail = " ".join(f"{k}={_short(v)}" for k, v in shown.items())
    return f"{stamp} {subject:<22} {event.kind:<12} {detail}"


def _caller(caller: dict[str, Any]) -> str:
    """A caller for the console: the number (``withheld`` when there is none) and the name."""
    number = caller.get("number") or "withheld"
    name = caller.get("name")
    return f"{number} ({name})" if name else number


def describe_acd(event: AcdEvent) -> str:
    """One line per ACD event (a caller joining, an agent's new state...)."""
    import time

    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    fields = event.to_record()
    kind = fields.pop("kind")
    fields.pop("at")
    detail = " ".join(f"{k}={_short(v)}" for k, v in fields.items() if v not in (None, "", ()))
    return f"{stamp} ACD {kind:<18} {detail}"


def describe_ivr(event: IvrEvent) -> str:
    """One line per IVR session: started (flow, transport, channel), finished (outcome,
    queue, the nodes walked as ``IVR_PATH`` has them, the inputs, the flow's variables)."""
    import time

    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    fields = event.to_record()
    kind = fields.pop("kind").removeprefix("ivr_")
    fields.pop("at")
    if isinstance(event, IvrFinished):
        fields["path"] = ">".join(event.path)
        fields["digits"] = "-".join(event.digits)
        own = {k: v for k, v in event.variables.items() if k not in ("IVR_PATH", "IVR_DIGITS")}
        fields["variables"] = own
    shown = {k: v for k, v in fields.items() if v not in (None, "", {}, False)}
    detail = " ".join(f"{k}={_short(v)}" for k, v in shown.items())
    return f"{stamp} IVR {kind:<18} {detail}"


def describe_ticket(event: TicketEvent) -> str:
    """One line per ticket event: created, changed, an SLA warning or breach (the deadline
    and when it is or was due), escalated."""
    import time

    stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
    fields = event.to_record()
    kind = fields.pop("kind")
    fields.pop("at"), fields.pop("ticket_id")
    subject = fields.pop("number")
    if isinstance(fields.get("due"), float):
        fields["due"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(fields["due"]))
    if isinstance(fields.get("fields"), tuple | list):
        fields["fields"] = ",".join(fields["fields"])
    detail = " ".join(f"{k}={_short(v)}" for k, v in fields.items() if v not in (None, "", ()))
    return f"{stamp} ticket {subject:<11} {kind:<16} {detail}"


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


def describe_pbx_down(queue: str, state: LinkState, problem: str | None) -> str:
    """A queue's figures line while the PBX link is not ready: the ACD's view of agents and
    callers is stale then, so the line says why instead of showing agents free."""
    if problem is not None:
        why = f"PBX unreachable: {problem}"
    else:
        why = f"PBX not connected yet (AMI link {state.value})"
    return f"[{queue}] {why}; agents and waiting callers unknown until the link is back"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k}={v}" for k, v in value.items() if v is not None) + ")"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
