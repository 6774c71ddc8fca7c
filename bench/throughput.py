"""Throughput: ``campaign send`` (A) against a bare aiohttp loop (B), side by side.

Both post the same rows to the same server process (``bench.fastserver``: a bare asyncio HTTP
responder, ~50 µs of CPU per request, so the server is not the bottleneck; ``--server aiohttp``
or ``--server sandbox`` swap it), alternating A, B, A, B... in one run, so machine noise hits
both alike; compare the ratios.

A  ``campaign send CAMPAIGN --yes`` as a subprocess: ``rate = 0``, ``concurrency = C``, state
   file on (a fresh one each time), results file written. Timed from launch to exit.
B  ``python -m bench.bareloop`` as a subprocess: the same concurrency, bodies serialised before
   the clock starts, timed from first request to last answer (its start-up excluded).

Figures: rows per second end to end (A: rows / process wall time; B: rows / loop time), A's
sending phase alone (rows / span between the first and last request arriving at the server),
and CPU time per row (the sender's own cost). Target: A >= 0.8 B.

    python -m bench.throughput --rows 100000 --concurrency 50 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import common

TARGET = 0.8


def _server(kind: str) -> common.Server:
    if kind == "sandbox":
        return common.sandbox_server()
    return common.fast_server(flavour=kind)


def run_a(server: common.Server, folder: Path, csv_path: Path, rows: int, concurrency: int,
          patch: str | None = None) -> dict[str, float]:
    common.fresh(folder)
    server.reset()
    toml = common.campaign_file(folder, csv_path, api_url=server.url, rate=0, concurrency=concurrency)
    cpu0 = server.cpu_seconds()
    m = common.measure(common.campaign_argv("send", str(toml), "--yes", patch=patch), cwd=folder)
    server_cpu = server.cpu_seconds() - cpu0
    if m.returncode != 0:
        raise SystemExit(f"campaign send exited {m.returncode}:\n{m.output[-3000:]}")
    arrivals = server.arrivals()
    counts = common.count_results(folder / "bench.results.csv")
    if len(arrivals) != rows or counts.get("sent") != rows:
        raise SystemExit(f"A: expected {rows} requests and sent rows, got {len(arrivals)} and {counts}")
    span = arrivals[-1] - arrivals[0]
    return {
        "rows": rows,
        "wall": m.wall,
        "rows_per_s": rows / m.wall,
        "first_request_after": arrivals[0] - m.started,
        "send_span": span,
        "send_rows_per_s": (rows - 1) / span if span > 0 else float("inf"),
        "after_last_request": m.started + m.wall - arrivals[-1],
        "cpu": m.cpu,
        "cpu_us_per_row": 1e6 * m.cpu / rows,
        "maxrss_mb": m.maxrss_mb,
        "server_cpu": server_cpu,
    }


def run_b(server: common.Server, csv_path: Path, rows: int, concurrency: int) -> dict[str, float]:
    server.reset()
    cpu0 = server.cpu_seconds()
    m = common.measure([common.PYTHON, "-m", "bench.bareloop", server.url, str(csv_path),
                        "--concurrency", str(concurrency)])
    server_cpu = server.cpu_seconds() - cpu0
    if m.returncode != 0:
        raise SystemExit(f"bare loop exited {m.returncode}:\n{m.output[-3000:]}")
    result = json.loads(m.output.strip().splitlines()[-1])
    arrivals = server.arrivals()
    if result["ok"] != rows or len(arrivals) != rows:
        raise SystemExit(f"B: expected {rows} requests, got {result} / {len(arrivals)}")
    return {
        "rows": rows,
        "wall": m.wall,
        "loop_time": result["elapsed"],
        "rows_per_s": rows / result["elapsed"],
        "cpu": result["loop_cpu"],
        "cpu_us_per_row": 1e6 * result["loop_cpu"] / rows,
        "process_cpu": m.cpu,
        "maxrss_mb": m.maxrss_mb,
        "server_cpu": server_cpu,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=2, help="A/B pairs, alternated")
    parser.add_argument("--server", choices=("raw", "aiohttp", "sandbox"), default="raw")
    parser.add_argument("--compare", metavar="PATCH",
                        help="also run A with this bench/patched.py patch in each round (A, A', B)")
    parser.add_argument("--workdir", type=Path, help="where runs keep their files (default bench/out/runs)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    common.header("bench.throughput", argv)
    csv_path = common.csv_file(args.rows)
    folder = common.run_folder("throughput", args.workdir)
    server_name = {"raw": "bench.fastserver (bare asyncio HTTP)", "aiohttp": "bench.fastserver --flavour aiohttp",
                   "sandbox": "campaign sandbox"}[args.server]
    print(f"{args.rows:,} rows, concurrency {args.concurrency}, server: {server_name} in its own process")
    pairs: list[dict[str, dict[str, float]]] = []
    with _server(args.server) as server:
        for i in range(args.repeat):
            a = run_a(server, folder, csv_path, args.rows, args.concurrency)
            print(f"  A{i + 1} campaign send: {a['rows_per_s']:8,.0f} rows/s end to end ({a['wall']:.2f} s), "
                  f"sending phase {a['send_rows_per_s']:,.0f} rows/s, CPU {a['cpu_us_per_row']:.0f} µs/row, "
                  f"first request after {a['first_request_after']:.2f} s, results written "
                  f"{a['after_last_request']:.2f} s after the last request, peak RSS {a['maxrss_mb']:.0f} MB, "
                  f"server CPU {a['server_cpu']:.1f} s", flush=True)
            if args.compare:
                a2 = run_a(server, folder, csv_path, args.rows, args.concurrency, args.compare)
                print(f"  A'{i + 1} with {args.compare}: {a2['rows_per_s']:8,.0f} rows/s end to end "
                      f"({a2['wall']:.2f} s), sending phase {a2['send_rows_per_s']:,.0f} rows/s, "
                      f"CPU {a2['cpu_us_per_row']:.0f} µs/row", flush=True)
            b = run_b(server, csv_path, args.rows, args.concurrency)
            print(f"  B{i + 1} bare aiohttp:  {b['rows_per_s']:8,.0f} rows/s ({b['loop_time']:.2f} s loop), "
                  f"CPU {b['cpu_us_per_row']:.0f} µs/row, server CPU {b['server_cpu']:.1f} s", flush=True)
            pairs.append({"a": a, "b": b, **({"patched": a2} if args.compare else {})})
    ratios = [p["a"]["rows_per_s"] / p["b"]["rows_per_s"] for p in pairs]
    send_ratios = [p["a"]["send_rows_per_s"] / p["b"]["rows_per_s"] for p in pairs]
    cpu_ratios = [p["a"]["cpu_us_per_row"] / p["b"]["cpu_us_per_row"] for p in pairs]
    ratio = common.median(ratios)
    summary = {
        "rows": args.rows,
        "concurrency": args.concurrency,
        "server": server_name,
        "a_rows_per_s": common.median([p["a"]["rows_per_s"] for p in pairs]),
        "a_send_rows_per_s": common.median([p["a"]["send_rows_per_s"] for p in pairs]),
        "b_rows_per_s": common.median([p["b"]["rows_per_s"] for p in pairs]),
        "a_cpu_us_per_row": common.median([p["a"]["cpu_us_per_row"] for p in pairs]),
        "b_cpu_us_per_row": common.median([p["b"]["cpu_us_per_row"] for p in pairs]),
        "ratio_end_to_end": ratio,
        "ratios_end_to_end": ratios,
        "ratio_sending_phase": common.median(send_ratios),
        "cpu_per_row_ratio": common.median(cpu_ratios),
        "target_met": ratio >= TARGET,
        "pairs": pairs,
        "machine": common.machine(),
        "command": common.command("bench.throughput", argv),
    }
    print(f"A/B end to end: {ratio:.2f} (pairs: {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"sending phase only: {summary['ratio_sending_phase']:.2f}; "
          f"CPU per row A/B: {summary['cpu_per_row_ratio']:.1f}x")
    print(f"target A >= {TARGET} B: {common.verdict(ratio >= TARGET)}")
    if args.compare:
        gain = common.median([p["patched"]["rows_per_s"] / p["a"]["rows_per_s"] for p in pairs])
        cpu = common.median([p["patched"]["cpu_us_per_row"] / p["a"]["cpu_us_per_row"] for p in pairs])
        summary["compare"] = {"patch": args.compare, "speed_vs_a": gain, "cpu_vs_a": cpu}
        print(f"with {args.compare}: {gain:.2f}x A's rows/s, {cpu:.2f}x A's CPU per row")
    common.write_json(args.json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
