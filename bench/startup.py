"""Start-up: from launching ``campaign send`` to its first request arriving at the server.

``campaign send --yes`` (subprocess, ``rate = 0``) of a large file against ``bench.fastserver``
(own process, which stamps each arrival with ``time.monotonic()``: CLOCK_MONOTONIC, the same
clock as this process's). The run is stopped with SIGTERM as soon as the first request has
arrived. Side by side, alternated: the big file, a 1,000-row file (the fixed cost), and
``campaign --version`` (interpreter start plus the CLI's imports).

Target: < 2 s for 1,000,000 rows.

    python -m bench.startup --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import common

TARGET = 2.0


def first_request(server: common.Server, folder: Path, csv_path: Path, timeout: float = 300) -> float:
    """Seconds from launch to the first request at the server."""
    common.fresh(folder)
    server.reset()
    toml = common.campaign_file(folder, csv_path, api_url=server.url, rate=0, concurrency=50)
    argv = common.campaign_argv("send", str(toml), "--yes")
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
                            env=common._env())
    try:
        while True:
            stats = server.stats()
            if stats["count"]:
                first = float(stats["first"])  # type: ignore[arg-type]
                break
            if proc.poll() is not None:
                raise SystemExit(f"campaign send exited {proc.returncode} before sending anything")
            if time.monotonic() - started > timeout:
                raise SystemExit("no request within the timeout")
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return first - started


def version_time() -> float:
    m = common.measure(common.campaign_argv("--version"), poll=0.01)
    if m.returncode != 0:
        raise SystemExit(f"campaign --version exited {m.returncode}")
    return m.wall


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    common.header("bench.startup", argv)
    big, small = common.csv_file(args.rows), common.csv_file(args.small_rows)
    folder = common.run_folder("startup", args.workdir)
    times: dict[str, list[float]] = {"big": [], "small": [], "version": []}
    with common.fast_server() as server:
        for _ in range(args.repeat):
            times["big"].append(first_request(server, folder, big))
            times["small"].append(first_request(server, folder, small))
            times["version"].append(version_time())
    med = {k: common.median(v) for k, v in times.items()}
    print(f"  first request, {args.rows:,}-row file:  median {med['big']:.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in times['big'])})")
    print(f"  first request, {args.small_rows:,}-row file:  median {med['small']:.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in times['small'])})")
    print(f"  campaign --version (start + imports): median {med['version']:.2f} s")
    print(f"  so the file's size costs {med['big'] - med['small']:.2f} s before the first request")
    ok = med["big"] < TARGET
    print(f"target < {TARGET:g} s at {args.rows:,} rows: {common.verdict(ok)}")
    common.write_json(args.json, {"rows": args.rows, "times": times, "median": med, "target_met": ok,
                                  "command": common.command("bench.startup", argv), "machine": common.machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
