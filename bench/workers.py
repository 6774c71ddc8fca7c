"""Several workers on one PostgreSQL campaign (issue 15): kill soak, pacing, rows/s, pacer cost.

Everything runs against a throw-away PostgreSQL cluster (bench/pgcluster.py) and `campaign
sandbox` subprocesses; each part prints its figures and the command that reproduces it.

``soak`` (default)
    ``--workers`` `campaign send --worker` processes share one campaign of ``--rows`` rows;
    every ``--min-delay``..``--max-delay`` seconds (seeded) one of them, chosen at random, gets
    SIGKILL and a new one starts, ``--kills`` times. Then workers run to the end, `campaign
    reconcile` resolves the unknown rows, and a last plain `send` sends what reconcile found
    pending. Checks: duplicates at the sandbox (numbers accepted more than once) = 0; rows lost
    (a row the sandbox accepted that the state does not show ``sent``, or a row not ``sent`` at
    the end) = 0. Exit 1 when a check fails.

``pacing``
    ``--workers`` workers, ``rate = --rate``: the busiest one-second window of requests at the
    sandbox, and the achieved rate.

``throughput``
    The same campaign (``rate = 0``, sandbox with no latency) sent by 1, 2 and 4 workers against
    PostgreSQL and by one plain `send` against SQLite, interleaved ``--repeat`` times: rows/s.

``pacer``
    The shared pacer's cost: ``SharedPacer._fetch`` (one transaction: SELECT ... FOR UPDATE,
    UPDATE) at rate 20 (one slot per fetch, the costliest case per request) timed ``--fetches``
    times from 1 and from 3 processes at once on one channel: microseconds per fetch, i.e. per
    request; at higher rates a fetch serves ``rate x 0.05`` requests.

    python -m bench.workers soak --workers 3 --kills 20
    python -m bench.workers pacing --workers 3 --rate 50
    python -m bench.workers throughput --rows 5000 --repeat 2
    python -m bench.workers pacer
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from bench.pgcluster import Cluster
from campaign.sandbox import spawn

KEY = "benchkey12345678:abcdefghijklmnopqrstuvwxyz012345"


def phone(i: int) -> str:
    return f"+1617{555 + i // 10000}{i % 10000:04d}"


def write_campaign(folder: Path, url: str, rows: int, *, rate: float, concurrency: int, name: str = "w") -> Path:
    with (folder / "contacts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Phone", "Name"])
        writer.writerows([phone(i), f"P{i}"] for i in range(rows))
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nprovider = "twlo"\nchannel_key = "twlo_16175550000"\napi_url = "{url}"\n\n'
        '[recipients]\nfile = "contacts.csv"\nphone_column = "Phone"\ndefault_country = "US"\n\n'
        '[message]\ntext = "Hi {{ Name }}"\n\n'
        f"[sending]\nrate = {rate}\nconcurrency = {concurrency}\nmax_attempts = 3\ntimeout = 10\n",
        encoding="utf-8",
    )
    return path


def env(state_url: str, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "SOCIOCS_API_URL"}
    out.update(SOCIOCS_API_KEY=KEY, CAMPAIGN_STATE_URL=state_url, **extra)
    return out


def start(path: Path, environ: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "campaign", "send", str(path), *args],
        cwd=path.parent,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def run_campaign(path: Path, environ: dict[str, str], command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`campaign COMMAND CAMPAIGN ARGS` to its end, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "campaign", command, str(path), *args],
        cwd=path.parent,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
    )


def sandbox_log(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_sandbox/requests", timeout=30) as response:
        return dict(json.loads(response.read()))


def accepted_per_number(url: str) -> Counter[str]:
    log = sandbox_log(url)
    return Counter(r["to"] for r in log["requests"] if r["method"] == "POST" and r["status"] == 200)


def final_statuses(state_url: str, path: Path) -> dict[str, str]:
    os.environ["CAMPAIGN_STATE_URL"] = state_url
    from campaign import store
    from campaign.config import load_campaign

    state = store.open_state(load_campaign(path))
    try:
        return {r[2]: r[3] for r in state.results()}
    finally:
        state.close()


def soak(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    with Cluster.start() as pg, spawn("--latency", str(args.latency)) as url, tempfile.TemporaryDirectory() as tmp:
        state_url = pg.create_database("soak")
        path = write_campaign(Path(tmp), url, args.rows, rate=args.rate, concurrency=args.concurrency)
        environ = env(state_url, CAMPAIGN_LEASE_SECONDS=str(args.lease))
        procs = [start(path, environ, "--worker") for _ in range(args.workers)]
        kills = 0
        began = time.monotonic()
        while kills < args.kills:
            time.sleep(rng.uniform(args.min_delay, args.max_delay))
            alive = [p for p in procs if p.poll() is None]
            if not alive:
                break
            victim = rng.choice(alive)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills += 1
            procs = [p for p in procs if p is not victim and p.poll() is None]
            procs.append(start(path, environ, "--worker"))
        codes = [p.wait(timeout=900) for p in procs]
        last = run_campaign(path, environ, "send", "--worker")
        before = Counter(final_statuses(state_url, path).values())
        rec = run_campaign(path, environ, "reconcile")
        resend = run_campaign(path, environ, "send", "--yes")
        elapsed = time.monotonic() - began
        accepted = accepted_per_number(url)
        statuses = final_statuses(state_url, path)
    duplicates = sum(1 for n in accepted.values() if n > 1)
    not_recorded = sum(1 for number in accepted if statuses.get(number) != "sent")
    not_sent = sum(1 for s in statuses.values() if s != "sent")
    print(f"workers {args.workers}, rows {args.rows}, kills {kills}, lease {args.lease} s, {elapsed:.0f} s")
    print(
        f"exit codes of the last workers: {codes}; last --worker: {last.returncode}; reconcile: {rec.returncode}; "
        f"final send: {resend.returncode}"
    )
    print(f"before reconcile: {dict(before)}")
    print(f"after reconcile and a final send: {dict(Counter(statuses.values()))}")
    print(f"duplicates at the sandbox: {duplicates}")
    print(f"accepted by the sandbox but not 'sent' in the state: {not_recorded}")
    print(f"rows not sent at the end: {not_sent}")
    print(
        f"command: python -m bench.workers soak --workers {args.workers} --rows {args.rows} --kills {args.kills} "
        f"--seed {args.seed}"
    )
    return 1 if duplicates or not_recorded or not_sent else 0


def busiest_second(url: str) -> tuple[int, float, int]:
    times = sorted(r["at"] for r in sandbox_log(url)["requests"] if r["method"] == "POST")
    worst = max(bisect.bisect_right(times, t + 1.0) - i for i, t in enumerate(times))
    return worst, (len(times) - 1) / (times[-1] - times[0]), len(times)


def pacing(args: argparse.Namespace) -> int:
    with Cluster.start() as pg, spawn() as url, tempfile.TemporaryDirectory() as tmp:
        state_url = pg.create_database("pacing")
        path = write_campaign(Path(tmp), url, args.rows, rate=args.rate, concurrency=args.concurrency)
        environ = env(state_url)
        procs = [start(path, environ, "--worker") for _ in range(args.workers)]
        codes = [p.wait(timeout=900) for p in procs]
        worst, achieved, n = busiest_second(url)
    print(
        f"{args.workers} workers, rate {args.rate:g}/s, {n} requests: busiest one-second window {worst}, "
        f"achieved {achieved:.2f}/s ({achieved / args.rate:.1%} of rate); exit codes {codes}"
    )
    print(f"command: python -m bench.workers pacing --workers {args.workers} --rate {args.rate:g} --rows {args.rows}")
    return 0 if worst <= args.rate else 1


def throughput(args: argparse.Namespace) -> int:
    figures: dict[str, list[float]] = {}
    with Cluster.start() as pg, spawn() as url:
        for round_ in range(args.repeat):
            for label in ("sqlite", "pg-1", "pg-2", "pg-4"):
                with tempfile.TemporaryDirectory() as tmp:
                    path = write_campaign(Path(tmp), url, args.rows, rate=0, concurrency=args.concurrency)
                    if label == "sqlite":
                        environ = {k: v for k, v in env("").items() if k != "CAMPAIGN_STATE_URL"}
                        began = time.monotonic()
                        codes = [start(path, environ, "--yes").wait(timeout=900)]
                    else:
                        environ = env(pg.create_database(f"t{round_}_{label.replace('-', '_')}"))
                        began = time.monotonic()
                        procs = [start(path, environ, "--worker") for _ in range(int(label[-1]))]
                        codes = [p.wait(timeout=900) for p in procs]
                    took = time.monotonic() - began
                    assert set(codes) == {0}, (label, codes)
                    figures.setdefault(label, []).append(args.rows / took)
    for label, values in figures.items():
        print(f"{label:7} {statistics.median(values):8.0f} rows/s  (runs: {', '.join(f'{v:.0f}' for v in values)})")
    print(f"command: python -m bench.workers throughput --rows {args.rows} --repeat {args.repeat}")
    return 0


def _fetch_loop(state_url: str, fetches: int, out: Any) -> None:
    os.environ["CAMPAIGN_STATE_URL"] = state_url
    from campaign.database import PostgresDatabase
    from campaign.ledger import SCHEMA
    from campaign.shared_pacer import SharedPacer

    db = PostgresDatabase(state_url, SCHEMA)

    async def main() -> float:
        pacer = SharedPacer(db, "bench", 20.0, user=str(os.getpid()))  # 50 ms of slots at 20/s: one per fetch
        loop = asyncio.get_running_loop()
        began = time.perf_counter()
        for _ in range(fetches):
            pacer._fetch(loop)
        return (time.perf_counter() - began) / fetches

    out.put(asyncio.run(main()))
    db.close()


def pacer_cost(args: argparse.Namespace) -> int:
    with Cluster.start() as pg:
        state_url = pg.create_database("pacer")
        for procs in (1, 3):
            queue: Any = multiprocessing.Queue()
            workers = [
                multiprocessing.Process(target=_fetch_loop, args=(state_url, args.fetches, queue)) for _ in range(procs)
            ]
            for w in workers:
                w.start()
            per = [queue.get(timeout=600) for _ in workers]
            for w in workers:
                w.join()
            print(
                f"{procs} process(es) fetching at once: {statistics.median(per) * 1e6:.0f} µs per fetch "
                f"(one transaction; a fetch serves max(1, rate x 0.05) requests)"
            )
    print(f"command: python -m bench.workers pacer --fetches {args.fetches}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="soak", choices=("soak", "pacing", "throughput", "pacer"))
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--min-delay", type=float, default=0.3)
    parser.add_argument("--max-delay", type=float, default=2.0)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--fetches", type=int, default=2000)
    args = parser.parse_args()
    if args.part == "pacing" and not args.rate:
        args.rate = 50
    return {"soak": soak, "pacing": pacing, "throughput": throughput, "pacer": pacer_cost}[args.part](args)


if __name__ == "__main__":
    sys.exit(main())
