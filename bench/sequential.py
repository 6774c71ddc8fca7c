"""``campaign send`` against a sequential ``requests`` loop, the server adding latency to each answer.

The server (``bench.fastserver --latency 0.02``, its own process) holds every answer 20 ms, like
a real API across a network. Side by side in one run over the same rows:

* ``campaign send`` (subprocess, ``rate = 0``, state and results files) at each ``--concurrency``;
* a plain sequential loop: one ``requests.Session`` (keep-alive), one POST at a time, bodies
  serialised before the clock starts (``bench.bareloop.bodies``), each answer parsed.

Speed-up = loop time / ``campaign send`` wall time (start-up and results file included).
Fewer rows than the throughput run (2,000 by default): the sequential loop alone needs
rows x 20 ms.

    python -m bench.sequential --rows 2000 --latency 0.02 --concurrency 10 50
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import common
from bench.bareloop import bodies


def sequential(url: str, items: list[bytes]) -> float:
    import requests

    headers = {"apikey": common.API_KEY, "Content-Type": "application/json", "Accept": "application/json"}
    with requests.Session() as session:
        session.headers.update(headers)
        started = time.perf_counter()
        for body in items:
            response = session.post(f"{url}/message", data=body, timeout=30)
            if response.status_code != 200 or response.json().get("status") != "success":
                raise SystemExit(f"sequential loop: unexpected answer {response.status_code} {response.text[:200]}")
        return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.sequential", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the server holds each answer")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    common.header("bench.sequential", argv)
    csv_path = common.csv_file(args.rows)
    folder = common.run_folder("sequential", args.workdir)
    items = bodies(csv_path)
    print(f"{args.rows:,} rows; server bench.fastserver adding {args.latency * 1000:.0f} ms to every answer")
    result: dict[str, object] = {"rows": args.rows, "latency": args.latency, "campaign": {},
                                 "command": common.command("bench.sequential", argv), "machine": common.machine()}
    campaign_runs: dict[str, dict[str, float]] = {}
    with common.fast_server(latency=args.latency) as server:
        for concurrency in args.concurrency:
            common.fresh(folder)
            server.reset()
            toml = common.campaign_file(folder, csv_path, api_url=server.url, rate=0, concurrency=concurrency)
            m = common.measure(common.campaign_argv("send", str(toml), "--yes"), cwd=folder)
            counts = common.count_results(folder / "bench.results.csv") if m.returncode == 0 else {}
            if m.returncode != 0 or counts.get("sent") != args.rows:
                raise SystemExit(f"campaign send exited {m.returncode} with {counts}:\n{m.output[-3000:]}")
            arrivals = server.arrivals()
            span = arrivals[-1] - arrivals[0]
            campaign_runs[str(concurrency)] = {"wall": m.wall, "rows_per_s": args.rows / m.wall,
                                               "send_span": span, "send_rows_per_s": (args.rows - 1) / span}
            print(f"  campaign send, concurrency {concurrency:3d}: {m.wall:6.2f} s  "
                  f"({args.rows / m.wall:,.0f} rows/s end to end; sending phase {(args.rows - 1) / span:,.0f} rows/s, "
                  f"ideal {concurrency / args.latency:,.0f})", flush=True)
        server.reset()
        loop_time = sequential(server.url, items)
        if server.stats()["count"] != args.rows:
            raise SystemExit("sequential loop: the server did not see every row")
    print(f"  sequential requests loop:     {loop_time:6.2f} s  ({args.rows / loop_time:,.1f} rows/s; "
          f"ideal {1 / args.latency:.0f})")
    for concurrency, run in campaign_runs.items():
        run["speedup"] = loop_time / run["wall"]
        run["speedup_sending_phase"] = loop_time / run["send_span"]
        print(f"speed-up of campaign send at concurrency {concurrency}: {run['speedup']:.1f}x end to end, "
              f"{run['speedup_sending_phase']:.1f}x in the sending phase")
    result.update(campaign=campaign_runs, sequential_time=loop_time, sequential_rows_per_s=args.rows / loop_time)
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
