"""AMI ingest benchmark: events/s through the codec alone and through codec + call model.

Streams: each real capture of ``shared/ami-captures``, and a synthetic busy stream made
from the 10-busy-hour capture repeated with fresh channel ids (so each copy is a new set of
ten overlapping calls, not a replay of the same ids). Bytes are fed in 64 KiB reads, as a
socket delivers them. A naive split-on-blank-line parser runs on the same bytes in the same
run as the baseline. One process, one core.

    python -m bench.ami_ingest [--repeat 5] [--copies 40] [--json results.json] [--check]
    python -m bench.ami_ingest --instructions [--copies 2]   # needs valgrind
    python -m bench.ami_ingest --scale [--calls 10,100,1000,10000] [--window 20000]
        [--repeat 5] [--seed 13] [--mix acd=0.6,queue=0.2,callback=0.2]
        [--missed-offers 0-3] [--check]

``--scale``: events/s against the number of live calls (see ``bench/ami_scale.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import ami_scale
from cti.ami.codec import Parser
from cti.calls.model import CallModel
from cti.capture import captures_dir

READ_SIZE = 65536
GOAL_CODEC_VS_BASELINE = 0.9
GOAL_MODEL_EVENTS_PER_S = 50_000


def naive_parse(reads: list[bytes]) -> int:
    """The baseline: the simplest incremental parser that returns frames. It keeps the
    unterminated tail, splits on the blank line, decodes and splits lines on ': ', and
    handles none of the codec's cases (banner, bad UTF-8, malformed lines, oversize)."""
    count = 0
    tail = b""
    for chunk in reads:
        *blocks, tail = (tail + chunk).split(b"\r\n\r\n")
        frames = []
        for block in blocks:
            headers = []
            for line in block.decode("utf-8").split("\r\n"):
                key, _, value = line.partition(": ")
                headers.append((key, value))
            frames.append(headers)
        count += len(frames)
    return count


def _reads(data: bytes) -> list[bytes]:
    return [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]


def codec_only(reads: list[bytes]) -> int:
    parser = Parser()
    count = 0
    for chunk in reads:
        count += len(parser.feed(chunk))
    return count


def codec_and_model(reads: list[bytes]) -> int:
    parser = Parser()
    model = CallModel()
    count = 0
    for chunk in reads:
        for message in parser.feed(chunk):
            model.handle(message)
            count += 1
    return count


_ID = re.compile(rb"(\d{10})\.(\d+)")
_CHANNEL_SUFFIX = re.compile(rb"-([0-9a-f]{8});")


def synthetic_stream(copies: int) -> bytes:
    """``copies`` of the busy hour, each with its Uniqueids/Linkedids and channel names
    shifted so the call model sees distinct calls."""
    source = (captures_dir() / "10-busy-hour.raw").read_bytes()
    banner_end = source.index(b"\r\n") + 2
    body = source[banner_end:]
    parts = [source[:banner_end]]
    for n in range(copies):
        shift = n * 100_000

        def renumber(m: re.Match[bytes], shift: int = shift) -> bytes:
            return b"%s.%d" % (m.group(1), int(m.group(2)) + shift)

        copy = _ID.sub(renumber, body)
        def resuffix(m: re.Match[bytes], n: int = n) -> bytes:
            return b"-%08x;" % (int(m.group(1), 16) + n * 4096)

        copy = _CHANNEL_SUFFIX.sub(resuffix, copy)
        parts.append(copy)
    return b"".join(parts)


def measure(fns: dict[str, Callable[[], int]], repeat: int) -> dict[str, tuple[int, float]]:
    """``name -> (messages, best seconds)``. The runs are interleaved (a, b, c, a, b, c…) so
    that a slow patch of the machine weighs on every contender alike."""
    best: dict[str, tuple[int, float]] = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            count = fn()
            elapsed = time.perf_counter() - start
            if name not in best or elapsed < best[name][1]:
                best[name] = (count, elapsed)
    return best


def run(repeat: int, copies: int) -> dict[str, Any]:
    streams = {p.stem: p.read_bytes() for p in sorted(captures_dir().glob("*.raw"))}
    streams[f"synthetic-busy-x{copies}"] = synthetic_stream(copies)
    rows: list[dict[str, Any]] = []
    for name, data in streams.items():
        reads = _reads(data)
        best = measure(
            {
                "baseline": partial(naive_parse, reads),
                "codec": partial(codec_only, reads),
                "model": partial(codec_and_model, reads),
            },
            repeat,
        )
        (n_base, t_base), (n_codec, t_codec) = best["baseline"], best["codec"]
        n_model, t_model = best["model"]
        rows.append(
            {
                "stream": name,
                "bytes": len(data),
                "messages": n_codec,
                "baseline_per_s": round(n_base / t_base),
                "codec_per_s": round(n_codec / t_codec),
                "codec_vs_baseline": round((n_codec / t_codec) / (n_base / t_base), 3),
                "codec_model_per_s": round(n_model / t_model),
            }
        )
    total = {
        key: sum(r[key] for r in rows if not str(r["stream"]).startswith("synthetic"))
        for key in ("messages",)
    }
    return {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        "cpu": _cpu_model(),
        "repeat": repeat,
        "rows": rows,
        "capture_messages": total["messages"],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


CONTENDERS: dict[str, Callable[[list[bytes]], int]] = {
    "none": lambda reads: 0,
    "baseline": naive_parse,
    "codec": codec_only,
    "codec+model": codec_and_model,
}


def instructions(copies: int) -> dict[str, int]:
    """Instructions each contender executes on the synthetic stream, counted by valgrind's
    callgrind (``none`` is the set-up they share, subtracted). Unlike seconds, the count
    does not move with the machine's load."""
    python = os.path.realpath(sys.executable)  # valgrind must not trace a launcher script
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    counts: dict[str, int] = {}
    for name in CONTENDERS:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                python,
                "-m",
                "bench.ami_ingest",
                "--only",
                name,
                "--copies",
                str(copies),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if match is None:
            raise RuntimeError(f"callgrind gave no count for {name}: {proc.stderr[-500:]}")
        counts[name] = int(match.group(1))
    base = counts.pop("none")
    return {name: n - base for name, n in counts.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--repeat", type=int, default=5, help="runs per measurement (best kept; --scale: median)"
    )
    ap.add_argument(
        "--copies", type=int, default=40, help="busy-hour copies in the synthetic stream"
    )
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions with valgrind instead of timing (deterministic)",
    )
    ap.add_argument("--only", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    ap.add_argument(
        "--scale", action="store_true", help="events/s against the number of live calls"
    )
    ap.add_argument(
        "--calls", default="10,100,1000,10000", help="--scale: live calls (first = reference)"
    )
    ap.add_argument("--window", type=int, default=20_000, help="--scale: events a timed window")
    ap.add_argument("--seed", type=int, default=13, help="--scale: the traffic's random seed")
    ap.add_argument(
        "--mix",
        type=ami_scale.parse_mix,
        help="--scale: shares of the call kinds (default acd=0.6,queue=0.2,callback=0.2)",
    )
    ap.add_argument(
        "--missed-offers",
        type=ami_scale.parse_range,
        default=ami_scale.MISSED_OFFERS,
        help="--scale: unanswered agent legs before the answered one, per ACD caller (0-3)",
    )
    args = ap.parse_args(argv)
    if args.scale:
        return ami_scale.main(
            [int(n) for n in args.calls.split(",")],
            window=args.window,
            repeat=args.repeat,
            seed=args.seed,
            mix=args.mix,
            missed_offers=args.missed_offers,
            json_path=args.json,
            check=args.check,
        )
    if args.only:
        CONTENDERS[args.only](_reads(synthetic_stream(args.copies)))
        return 0
    if args.instructions:
        counts = instructions(args.copies)
        ratio = counts["baseline"] / counts["codec"]
        print(f"instructions on {args.copies} busy-hour copies (callgrind, set-up subtracted):")
        for name, n in counts.items():
            print(f"  {name:<12}{n:>14,}")
        print(
            f"codec vs baseline: {ratio:.3f}x (goal >= {GOAL_CODEC_VS_BASELINE}): "
            f"{'met' if ratio >= GOAL_CODEC_VS_BASELINE else 'MISSED'}"
        )
        return 1 if args.check and ratio < GOAL_CODEC_VS_BASELINE else 0
    result = run(args.repeat, args.copies)
    print(f"machine: {result['cpu']}; {result['machine']}")
    header = (
        f"{'stream':<26}{'msgs':>8}{'baseline/s':>12}{'codec/s':>10}{'ratio':>7}"
        f"{'codec+model/s':>15}"
    )
    print(header)
    print("-" * len(header))
    for r in result["rows"]:
        print(
            f"{r['stream']:<26}{r['messages']:>8}{r['baseline_per_s']:>12,}{r['codec_per_s']:>10,}"
            f"{r['codec_vs_baseline']:>7.2f}{r['codec_model_per_s']:>15,}"
        )
    synthetic = result["rows"][-1]
    ok_ratio = synthetic["codec_vs_baseline"] >= GOAL_CODEC_VS_BASELINE
    ok_model = synthetic["codec_model_per_s"] >= GOAL_MODEL_EVENTS_PER_S
    print(
        f"\ngoals on the synthetic stream: codec >= {GOAL_CODEC_VS_BASELINE}x baseline: "
        f"{'met' if ok_ratio else 'MISSED'}; codec + call model >= {GOAL_MODEL_EVENTS_PER_S:,}/s: "
        f"{'met' if ok_model else 'MISSED'}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 1 if args.check and not (ok_ratio and ok_model) else 0


if __name__ == "__main__":
    sys.exit(main())
