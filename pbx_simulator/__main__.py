"""``python -m pbx_simulator [--port 0] [--traffic RATE]``: run the simulator; prints
``listening on HOST:PORT`` once ready (tests read the ephemeral port from it)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from twisted.internet import reactor

from . import Settings, TrafficSettings, serve


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pbx_simulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5038)
    ap.add_argument("--username", default="cti")
    ap.add_argument("--secret", default="ctilab-secret")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--traffic", type=float, metavar="CALLS_PER_MINUTE", help="simulate callers")
    args = ap.parse_args(argv)
    settings = Settings(
        host=args.host, port=args.port, username=args.username, secret=args.secret, seed=args.seed
    )
    if args.traffic:
        settings = replace(
            settings, traffic=TrafficSettings(enabled=True, calls_per_minute=args.traffic)
        )
    port = serve(reactor, settings)
    print(f"listening on {port.getHost().host}:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
