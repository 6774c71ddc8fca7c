"""Pacing precision: ``campaign send`` at a fixed rate, judged by the arrival times at the server.

For each rate, a fresh ``campaign sandbox`` subprocess (the real local API) and ``rate x seconds``
rows sent with ``campaign send --yes`` at ``rate = R``. From ``GET /_sandbox/requests``
(arrival times, ``time.monotonic`` of the sandbox process):

* achieved rate = (requests - 1) / (last arrival - first arrival): n requests span n - 1
  intervals (``requests / span`` is shown too; it overstates by 1/(n-1)). Target: within 2 %;
* the most requests in any one-second window: sliding (every half-open window [t, t + 1 s)
  starting at an arrival, where the maximum is reached) and fixed buckets of one second
  counted from the first arrival. Target: <= rate;
* the gaps between consecutive arrivals (min, median, max) against 1/rate.

    python -m bench.pacing --rates 5 50 200 --seconds 20
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import common

TOLERANCE = 0.02


def windows(arrivals: Sequence[float], width: float = 1.0) -> tuple[int, int]:
    """(max in any sliding window [t, t + width), max in fixed buckets from the first arrival)."""
    if not arrivals:
        return 0, 0
    sliding = max(bisect.bisect_left(arrivals, t + width) - i for i, t in enumerate(arrivals))
    buckets: dict[int, int] = {}
    for t in arrivals:
        k = math.floor((t - arrivals[0]) / width)
        buckets[k] = buckets.get(k, 0) + 1
    return sliding, max(buckets.values())


def limiter_alone(rate: float, seconds: float, waiters: int = 10) -> float:
    """The rate ``AsyncLimiter(1, 1/rate)`` (what ``campaign.sender.Pacer`` uses) lets through on
    an otherwise idle event loop: (n - 1) / span of the acquisition times."""
    import asyncio
    import time

    from aiolimiter import AsyncLimiter

    n = max(3, round(rate * seconds))

    async def run() -> list[float]:
        limiter = AsyncLimiter(1, 1.0 / rate)
        times: list[float] = []

        async def worker() -> None:
            while len(times) < n:
                await limiter.acquire()
                times.append(time.monotonic())

        await asyncio.gather(*(worker() for _ in range(waiters)))
        return times[:n]

    times = asyncio.run(run())
    return (n - 1) / (times[-1] - times[0])


def measure_rate(rate: float, seconds: float, concurrency: int, folder: Path,
                 patch: str | None = None, server_kind: str = "sandbox") -> dict[str, object]:
    rows = max(2, round(rate * seconds))
    csv_path = common.csv_file(rows)
    common.fresh(folder)
    with common.sandbox_server() if server_kind == "sandbox" else common.fast_server() as server:
        toml = common.campaign_file(folder, csv_path, api_url=server.url, rate=rate, concurrency=concurrency)
        m = common.measure(common.campaign_argv("send", str(toml), "--yes", patch=patch), cwd=folder)
        arrivals = server.arrivals()
        statuses = server.statuses() if server_kind == "sandbox" else {200: len(arrivals)}
    counts = common.count_results(folder / "bench.results.csv") if m.returncode == 0 else {}
    if m.returncode != 0 or counts.get("sent") != rows or len(arrivals) != rows:
        raise SystemExit(f"rate {rate}: exit {m.returncode}, {counts}, {len(arrivals)} requests:\n{m.output[-3000:]}")
    span = arrivals[-1] - arrivals[0]
    achieved = (rows - 1) / span
    sliding, fixed = windows(arrivals)
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    error = achieved / rate - 1
    return {
        "variant": patch or "campaign",
        "server": server_kind,
        "rate": rate,
        "rows": rows,
        "span": span,
        "achieved": achieved,
        "requests_per_span": rows / span,
        "error_pct": 100 * error,
        "max_sliding_1s": sliding,
        "max_fixed_1s": fixed,
        "gap_min_ms": 1000 * gaps[0],
        "gap_median_ms": 1000 * common.median(gaps),
        "gap_max_ms": 1000 * gaps[-1],
        "statuses": statuses,
        "wall": m.wall,
        "rate_ok": abs(error) <= TOLERANCE,
        "window_ok": sliding <= rate and fixed <= rate,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.pacing", description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[5, 50, 200])
    parser.add_argument("--seconds", type=float, default=20, help="per rate (0: no campaign runs)")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--server", nargs="+", choices=("sandbox", "fast"), default=["sandbox"],
                        help="which server stamps the arrivals: campaign sandbox (default) and/or bench.fastserver "
                             "(stamps in data_received, so its stamps carry less of its own scheduling jitter)")
    parser.add_argument("--compare", metavar="PATCH", help="also run each rate with this bench/patched.py patch")
    parser.add_argument("--limiter-alone", type=float, default=0, metavar="SECONDS",
                        help="also time aiolimiter's AsyncLimiter(1, 1/rate) alone on an idle loop")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    common.header("bench.pacing", argv)
    folder = common.run_folder("pacing", args.workdir)
    print(f"server: {' and '.join(args.server)} subprocess; {args.seconds:g} s per rate, "
          f"concurrency {args.concurrency}")
    runs = []
    variants = [None, args.compare] if args.compare else [None]
    plan = [(rate, kind, patch) for rate in args.rates for kind in args.server for patch in variants]
    for rate, kind, patch in plan if args.seconds > 0 else []:
        r = measure_rate(rate, args.seconds, args.concurrency, folder, patch, kind)
        runs.append(r)
        print(f"  {r['variant']:10s} {kind:7s} rate {rate:g}/s: {r['rows']} requests over {r['span']:.2f} s -> "
              f"achieved "
              f"{r['achieved']:.3f}/s ({r['error_pct']:+.2f} %; requests/span {r['requests_per_span']:.3f}) "
              f"[{common.verdict(bool(r['rate_ok']))}]; max in 1 s: sliding {r['max_sliding_1s']}, "
              f"fixed {r['max_fixed_1s']} [{common.verdict(bool(r['window_ok']))}]; gaps min "
              f"{r['gap_min_ms']:.1f} / median {r['gap_median_ms']:.1f} / max {r['gap_max_ms']:.1f} ms "
              f"(1/rate = {1000 / rate:.1f} ms); statuses {r['statuses']}", flush=True)
    alone: dict[str, float] = {}
    for rate in args.rates if args.limiter_alone else []:
        alone[str(rate)] = achieved = limiter_alone(rate, args.limiter_alone)
        print(f"  AsyncLimiter(1, 1/{rate:g}) alone on an idle loop, 10 waiters, {args.limiter_alone:g} s: "
              f"{achieved:.3f}/s ({100 * (achieved / rate - 1):+.2f} %)", flush=True)
    ok = bool(runs) and all(r["rate_ok"] and r["window_ok"] for r in runs if r["variant"] == "campaign")
    if runs:
        print(f"targets (achieved within {TOLERANCE:.0%}, max per second <= rate): {common.verdict(ok)}")
    if args.compare:
        patched_ok = all(r["rate_ok"] and r["window_ok"] for r in runs if r["variant"] == args.compare)
        print(f"with {args.compare}: {common.verdict(patched_ok)}")
    common.write_json(args.json, {"runs": runs, "limiter_alone": alone, "targets_met": ok,
                                  "command": common.command("bench.pacing", argv),
                                  "machine": common.machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
