"""Peak memory (RSS) of ``campaign check`` and ``campaign send`` as the file grows.

Each command runs as a subprocess; its peak RSS is the kernel's high-water mark for that
process (``os.wait4`` ``ru_maxrss``), cross-checked by polling with psutil every 50 ms when
psutil is installed. ``send`` goes to ``bench.fastserver`` (own process) at ``rate = 0``,
``concurrency = 50``, state file on, results written. Sizes: CSV files of ``--sizes`` rows and
one .xlsx of ``--xlsx-rows`` rows.

A full send of a 1,000,000-row file at ~3,000 rows/s takes 5-6 minutes on its own, so sends
of files larger than ``--limit-above`` rows use ``--limit LIMIT``: the whole file is still
read, checked, planned and recorded in the state file (every row, in 256-row transactions) and
the results file lists every row; only LIMIT rows are posted (the sender's queue is bounded,
so posting more changes nothing in memory). ``--full`` sends everything.

Targets: < 300 MB at 1M rows; 1M peak within 1.3x of the 100k peak (per command).

    python -m bench.memory --sizes 100000 1000000 --xlsx-rows 100000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import common

LIMIT_MB = 300
GROWTH = 1.3


def run_case(command: str, path: Path, rows: int, limit: int | None, server: common.Server,
             folder: Path, patch: str | None = None) -> dict[str, object]:
    common.fresh(folder)
    server.reset()
    toml = common.campaign_file(folder, path, api_url=server.url, rate=0, concurrency=50)
    args = [command, str(toml)]
    if command == "send":
        args.append("--yes")
        if limit is not None:
            args += ["--limit", str(limit)]
    m = common.measure(common.campaign_argv(*args, patch=patch), cwd=folder, timeout=1800)
    report = folder / ("bench.check.csv" if command == "check" else "bench.results.csv")
    counts = common.count_results(report) if report.exists() else {}
    expected = "dry-run" if command == "check" else "sent"
    posted = int(server.stats()["count"])  # type: ignore[call-overload]
    wanted = rows if command == "check" or limit is None else min(limit, rows)
    ok = m.returncode == 0 and sum(counts.values()) == rows and counts.get(expected, 0) == wanted
    if command == "send":
        ok = ok and posted == wanted
    if not ok:
        raise SystemExit(f"{command} {path.name}: exit {m.returncode}, {counts}, {posted} posted:\n{m.output[-3000:]}")
    return {
        "variant": patch or "campaign",
        "command": command,
        "file": path.name,
        "rows": rows,
        "limit": limit,
        "posted": posted if command == "send" else 0,
        "maxrss_mb": m.maxrss_mb,
        "polled_peak_mb": m.polled_peak_mb,
        "wall": m.wall,
        "cpu": m.cpu,
        "rows_per_s": rows / m.wall,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--xlsx-rows", type=int, default=100_000, help="0: no .xlsx case")
    parser.add_argument("--commands", nargs="+", choices=("check", "send"), default=["check", "send"])
    parser.add_argument("--limit-above", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=20_000)
    parser.add_argument("--full", action="store_true", help="send every row whatever the size")
    parser.add_argument("--patch", help="run campaign with this bench/patched.py patch (e.g. check-tempfile)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    common.header("bench.memory", argv)
    folder = common.run_folder("memory", args.workdir)
    files = [(common.csv_file(n), n) for n in args.sizes]
    if args.xlsx_rows:
        files.append((common.xlsx_file(args.xlsx_rows), args.xlsx_rows))
    cases = []
    with common.fast_server() as server:
        for command in args.commands:
            for path, rows in files:
                limit = args.limit if command == "send" and not args.full and rows > args.limit_above else None
                case = run_case(command, path, rows, limit, server, folder, args.patch)
                cases.append(case)
                polled = case["polled_peak_mb"]
                shown = f" (psutil polling: {polled:.0f} MB)" if isinstance(polled, float) else ""
                note = f", --limit {limit}: {case['posted']:,} posted" if limit else ""
                print(f"  {command:5s} {path.name:24s} {rows:>9,} rows{note}: peak RSS {case['maxrss_mb']:6.0f} MB"
                      f"{shown}; {case['wall']:.1f} s wall, {case['rows_per_s']:,.0f} rows/s", flush=True)
    verdicts: dict[str, bool] = {}
    csv_cases = [c for c in cases if str(c["file"]).endswith(".csv")]
    biggest = max(args.sizes)
    smallest = min(args.sizes)
    for command in args.commands:
        by_rows = {c["rows"]: c for c in csv_cases if c["command"] == command}
        big, small = by_rows.get(biggest), by_rows.get(smallest)
        if big is None or small is None:
            continue
        big_mb, small_mb = float(big["maxrss_mb"]), float(small["maxrss_mb"])  # type: ignore[arg-type]
        verdicts[f"{command}_under_{LIMIT_MB}mb"] = big_mb < LIMIT_MB
        if biggest != smallest:
            verdicts[f"{command}_growth_within_{GROWTH}x"] = big_mb <= GROWTH * small_mb
        print(f"{command}: {biggest:,} rows {big_mb:.0f} MB (< {LIMIT_MB} MB: "
              f"{common.verdict(big_mb < LIMIT_MB)}); {big_mb / small_mb:.2f}x the {smallest:,}-row peak "
              f"(<= {GROWTH}x: {common.verdict(big_mb <= GROWTH * small_mb)})")
    common.write_json(args.json, {"patch": args.patch, "cases": cases, "verdicts": verdicts,
                                  "command": common.command("bench.memory", argv),
                                  "machine": common.machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
