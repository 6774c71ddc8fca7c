"""Kill soak and state-file overhead: does a SIGKILL ever lose a row or send one twice?

Kill soak (default)
    A `campaign sandbox` subprocess outlives ``--kills`` `campaign send` subprocesses, each
    killed with SIGKILL after a seeded random delay (``--min-delay`` .. ``--max-delay``), so
    that kills land during start-up, mid-stream and near the end. Then `send` runs normally,
    `campaign reconcile` resolves the unknown rows, and a last `send` sends those found pending.
    It checks, and prints: rows lost (a row not ``sent``/``unknown`` after the kills, or not
    ``sent`` at the end), duplicates at the sandbox (numbers accepted more than once), unknown
    rows against the bound ``concurrency x kills``, rows left ``sending`` by any one kill
    (at most ``concurrency``), and that reconcile agrees with what the sandbox accepted.
    Exit 1 when any check fails.

        python bench/kill_soak.py --kills 50

State-file overhead (``--overhead``)
    The same ``--overhead-rows`` rows sent to a sandbox subprocess with no latency, ``rate = 0``
    and ``--overhead-concurrency`` requests in flight, side by side, ``--repeat`` times each,
    interleaved: (a) `campaign send` (state file: WAL, ``synchronous=NORMAL``); (b) a bare
    aiohttp loop posting the same pre-serialised bodies with the same concurrency and no state
    at all; (c) `campaign send` with ``CAMPAIGN_STATE_SYNC=FULL``; (d) as (a) with the campaign
    folder on tmpfs (``/dev/shm``), when there is one.

        python bench/kill_soak.py --overhead

Figures of record: ``bench/RESULTS-kill.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from campaign.sandbox import spawn

KEY = "benchkey12345678:abcdefghijklmnopqrstuvwxyz012345"  # shaped like a Sociocs key: 16:32
NAME = "soak"


# --- shared helpers -----------------------------------------------------------------------------


@contextmanager
def sandbox(latency: float) -> Iterator[str]:
    """A `campaign sandbox` subprocess; yields its URL, stops it on exit."""
    with spawn(*(["--latency", str(latency)] if latency else [])) as url:
        yield url


def phone(i: int) -> str:
    """The i-th distinct valid US number: +1 617 555 0000, 0001, ... then 556 0000, ..."""
    return f"+1617{555 + i // 10000}{i % 10000:04d}"


def write_campaign(folder: Path, url: str, rows: int, concurrency: int) -> Path:
    with (folder / "contacts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Phone", "Name", "first_name", "order_id"])
        writer.writerows([phone(i), f"Person {i}", f"P{i}", f"A-{i}"] for i in range(rows))
    path = folder / f"{NAME}.toml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name = "{NAME}"
            provider = "twlo"
            channel_key = "twlo_16175550000"
            api_url = "{url}"

            [recipients]
            file = "contacts.csv"
            phone_column = "Phone"
            name_column = "Name"
            default_country = "US"

            [message]
            text = "Hi {{{{ first_name }}}}, order {{{{ order_id }}}} is ready."

            [sending]
            rate = 0
            concurrency = {concurrency}
            timeout = 5
            """
        ),
        encoding="utf-8",
    )
    return path


def env(**extra: str) -> dict[str, str]:
    drop = ("SOCIOCS_API_KEY", "SOCIOCS_API_URL", "CAMPAIGN_STATE_SYNC")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "SOCIOCS_API_KEY": KEY, **extra}


def start(command: str, path: Path, log: TextIO, **extra_env: str) -> subprocess.Popen[bytes]:
    log.write(f"\n$ campaign {command} {path.name}\n")
    log.flush()
    args = [sys.executable, "-m", "campaign", command, str(path)] + (["--yes"] if command == "send" else [])
    return subprocess.Popen(
        args, cwd=path.parent, env=env(**extra_env), stdout=log, stderr=log, stdin=subprocess.DEVNULL
    )


def run(command: str, path: Path, log: TextIO, **extra_env: str) -> int:
    proc = start(command, path, log, **extra_env)
    try:
        return proc.wait(900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def get(url: str) -> Any:
    request = urllib.request.Request(url, headers={"apikey": KEY, "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def sandbox_log(url: str) -> dict[str, Any]:
    """``GET /_sandbox/requests``: ``{"requests": [...], "accepted": n}``."""
    result: dict[str, Any] = get(f"{url}/_sandbox/requests")
    return result


def accepted(url: str) -> dict[str, list[str]]:
    """``GET /messages`` (yesterday and today, UTC): accepted message ids per number."""
    today = datetime.now(UTC).date()
    data = get(f"{url}/messages?start_date={today - timedelta(days=1)}&end_date={today}")
    if data.get("status") != "success":
        raise RuntimeError(f"GET /messages failed: {data}")
    out: dict[str, list[str]] = defaultdict(list)
    for message in data["data"]:
        out["+" + str(message["to"]).lstrip("+")].append(str(message["message_id"]))
    return dict(out)


def journal(path: Path) -> dict[str, tuple[str, str]]:
    """The state file's ``recipients``: phone -> (status, message_id); {} before it exists."""
    if not path.exists():
        return {}
    with closing(sqlite3.connect(path)) as db:
        try:
            rows = db.execute("SELECT phone, status, message_id FROM recipients").fetchall()
        except sqlite3.OperationalError:  # killed before the schema was committed
            return {}
    return {str(p): (str(s), str(m)) for p, s, m in rows}


def results(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


# --- kill soak ----------------------------------------------------------------------------------


@dataclass
class Soak:
    """Figures of one soak."""

    kills: int = 0
    rows: int = 0
    finished_alone: int = 0  # runs that exited by themselves before their kill came
    phases: Counter[str] = field(default_factory=Counter)
    max_in_flight: int = 0  # most rows left `sending` by one kill
    sent_before: int = 0  # after the kills and one normal send, before reconcile
    unknown_before: int = 0
    unknown_accepted: int = 0  # of those, accepted by the sandbox (the kill hid the answer)
    lost_before: int = 0  # rows neither sent nor unknown after the kills
    reconciled_sent: int = 0
    reconciled_pending: int = 0
    unknown_after: int = 0
    reconcile_mismatches: int = 0
    sent_final: int = 0
    lost_final: int = 0  # rows not sent at the end
    duplicates: int = 0  # numbers the sandbox accepted more than once (at any point)
    id_mismatches: int = 0  # sent rows whose message_id is not the one the sandbox accepted
    stray_tmp: int = 0  # results-file temporaries left behind by kills (.NAME.results.csv.*.tmp)
    wall: float = 0.0
    failures: list[str] = field(default_factory=list)


def soak(args: argparse.Namespace, log: TextIO, folder: Path) -> Soak:
    s = Soak(rows=args.rows)
    started = time.monotonic()
    rng = random.Random(args.seed)
    with sandbox(args.latency) as url:
        path = write_campaign(folder, url, args.rows, args.concurrency)
        state = folder / f"{NAME}.state.sqlite"
        phones = {phone(i) for i in range(args.rows)}
        ever_in_flight: set[str] = set()
        while s.kills < args.kills:
            delay = rng.uniform(args.min_delay, args.max_delay)
            before = int(sandbox_log(url)["accepted"])
            proc = start("send", path, log)
            try:
                code = proc.wait(delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                time.sleep(args.latency + 0.05)  # let the sandbox finish the requests the kill cut off
            else:
                if code not in (0, 1):
                    s.failures.append(f"a send exited {code} on its own")
                s.finished_alone += 1
                continue
            s.kills += 1
            now = journal(state)
            statuses = Counter(status for status, _ in now.values())
            sending = {p for p, (status, _) in now.items() if status == "sending"}
            s.max_in_flight = max(s.max_in_flight, len(sending))
            left = args.rows - statuses["sent"] - statuses["unknown"] - len(sending)
            got = int(sandbox_log(url)["accepted"]) - before
            phase = ("start-up" if left else "idle") if not got else ("near the end" if left < args.rows // 10
                                                                      else "mid-stream")
            s.phases[phase] += 1
            caught = len(sending - ever_in_flight)  # rows this kill caught in flight
            ever_in_flight |= sending
            log.write(f"[kill {s.kills}: {delay:.2f} s, {phase}, accepted {got}, in flight {caught}]\n")
            if args.verbose:
                print(f"kill {s.kills:3d} after {delay:.2f} s: {phase:12s} accepted {got:4d}, "
                      f"in flight {caught}, left {left}", flush=True)
        code = run("send", path, log)
        if code not in (0, 1):
            s.failures.append(f"the normal send exited {code}")

        rows = results(folder / f"{NAME}.results.csv")
        before_reconcile = journal(state)
        seen = accepted(url)
        status = {r["phone"]: r["status"] for r in rows}
        s.sent_before = sum(v == "sent" for v in status.values())
        unknown = {p for p, v in status.items() if v == "unknown"}
        s.unknown_before = len(unknown)
        s.unknown_accepted = sum(1 for p in unknown if seen.get(p))
        s.lost_before = len(phones - {p for p, v in status.items() if v in ("sent", "unknown")})
        if len(rows) != args.rows:
            s.failures.append(f"the results file has {len(rows)} rows, not {args.rows}")
        if unknown != ever_in_flight:
            s.failures.append(f"{len(unknown ^ ever_in_flight)} unknown rows were not in flight at a kill")
        for p, (st, mid) in before_reconcile.items():
            ids = seen.get(p, [])
            if (st == "sent" and ids != [mid]) or len(ids) > 1:
                s.id_mismatches += 1

        if run("reconcile", path, log) != 0:
            s.failures.append("reconcile did not exit 0")
        after = journal(state)
        for p in unknown:
            ids = seen.get(p, [])
            expected = ("sent", ids[0]) if ids else ("pending", after[p][1])
            s.reconcile_mismatches += after[p] != expected
            s.reconciled_sent += after[p][0] == "sent"
            s.reconciled_pending += after[p][0] == "pending"
        s.unknown_after = sum(st == "unknown" for st, _ in after.values())

        if run("send", path, log) != 0:
            s.failures.append("the last send did not exit 0")
        final = accepted(url)
        last = {r["phone"]: r for r in results(folder / f"{NAME}.results.csv")}
        s.sent_final = sum(r["status"] == "sent" for r in last.values())
        s.lost_final = len(phones - {p for p, r in last.items() if r["status"] == "sent"})
        s.duplicates = sum(len(ids) > 1 for ids in final.values())
        s.id_mismatches += sum(final.get(p, []) != [r["message_id"]] for p, r in last.items())
        s.stray_tmp = len(list(folder.glob(f".{NAME}.results.csv.*.tmp")))
        if set(final) - phones:
            s.failures.append("the sandbox accepted messages to numbers not in the file")
    s.wall = time.monotonic() - started
    if s.max_in_flight > args.concurrency:
        s.failures.append(f"a kill left {s.max_in_flight} rows in flight (> concurrency {args.concurrency})")
    if s.unknown_before > args.concurrency * s.kills:
        s.failures.append(f"{s.unknown_before} unknown rows > concurrency x kills")
    for name in ("lost_before", "lost_final", "duplicates", "id_mismatches", "reconcile_mismatches", "unknown_after"):
        if getattr(s, name):
            s.failures.append(f"{name} = {getattr(s, name)}")
    return s


def print_soak(s: Soak, args: argparse.Namespace, command: str) -> None:
    phases = ", ".join(f"{k} {v}" for k, v in sorted(s.phases.items()))
    print(textwrap.dedent(f"""\
        kill soak: {s.kills} kills ({phases}), {s.finished_alone} runs finished before their kill
          rows                          {s.rows}
          concurrency / latency         {args.concurrency} / {args.latency} s
          delays                        {args.min_delay}..{args.max_delay} s, seed {args.seed}
          most rows in flight at a kill {s.max_in_flight} (bound: concurrency {args.concurrency})
          after the kills + one send:   sent {s.sent_before}, unknown {s.unknown_before} \
(bound {args.concurrency * s.kills}), lost {s.lost_before}
          unknown accepted by the API   {s.unknown_accepted} of {s.unknown_before}
          reconcile                     {s.reconciled_sent} -> sent, {s.reconciled_pending} -> pending, \
{s.reconcile_mismatches} disagree with the sandbox; unknown after: {s.unknown_after}
          after the last send           sent {s.sent_final} of {s.rows}, lost {s.lost_final}
          duplicates at the sandbox     {s.duplicates} numbers accepted more than once
          message_id mismatches         {s.id_mismatches}
          stray results temp files      {s.stray_tmp} (left by kills during the results export)
          wall time                     {s.wall:.1f} s
          verdict                       {"OK" if not s.failures else "FAILED: " + "; ".join(s.failures)}
          reproduce                     {command}"""))


# --- state-file overhead ------------------------------------------------------------------------


@dataclass
class Timing:
    variant: str
    wall: float  # process wall time (campaign send) or the posting loop's (bare aiohttp)
    span: float  # sandbox side: first to last arrival of this run's POST /message
    rows: int


def sandbox_span(url: str, skip: int) -> tuple[float, int, int]:
    """(last - first arrival, POSTs answered 200, log length) of the log entries after ``skip``."""
    log = sandbox_log(url)["requests"]
    posts = [r for r in log[skip:] if r["method"] == "POST" and r["path"] == "/message"]
    ok = sum(r["status"] == 200 for r in posts)
    span = max(r["at"] for r in posts) - min(r["at"] for r in posts) if posts else 0.0
    return span, ok, len(log)


async def bare_loop(url: str, bodies: Sequence[bytes], concurrency: int) -> float:
    """POST every body with ``concurrency`` workers and no state; the loop's wall time."""
    import aiohttp

    headers = {"apikey": KEY, "Content-Type": "application/json", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        items = iter(bodies)
        bad: list[int] = []

        async def worker() -> None:
            for body in items:
                async with session.post(f"{url}/message", data=body) as resp:
                    payload = await resp.json()
                    if resp.status != 200 or payload.get("status") != "success":
                        bad.append(resp.status)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    if bad:
        raise RuntimeError(f"the bare loop got {len(bad)} failures, e.g. HTTP {bad[0]}")
    return wall


def overhead_once(variant: str, url: str, root: Path, args: argparse.Namespace, log: TextIO) -> Timing:
    folder = Path(tempfile.mkdtemp(prefix=f"overhead-{variant[0]}-", dir=root))
    path = write_campaign(folder, url, args.overhead_rows, args.overhead_concurrency)
    skip = len(sandbox_log(url)["requests"])
    if variant.startswith("b"):
        from campaign.config import load_campaign
        from campaign.runner import Pipeline

        bodies = [p.job.body for batch in Pipeline(load_campaign(path)).batches() for p in batch if p.job]
        wall = asyncio.run(bare_loop(url, bodies, args.overhead_concurrency))
    else:
        extra = {"CAMPAIGN_STATE_SYNC": "FULL"} if variant.startswith("c") else {}
        started = time.perf_counter()
        code = run("send", path, log, **extra)
        wall = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"{variant}: campaign send exited {code}")
    span, ok, _ = sandbox_span(url, skip)
    if ok != args.overhead_rows:
        raise RuntimeError(f"{variant}: the sandbox accepted {ok} of {args.overhead_rows}")
    return Timing(variant, wall, span, args.overhead_rows)


def overhead(args: argparse.Namespace, log: TextIO, folder: Path) -> dict[str, list[Timing]]:
    variants = ["a send (WAL, NORMAL)", "b bare aiohttp loop", "c send (WAL, FULL)"]
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        variants.append("d send (WAL, NORMAL), tmpfs")
    out: dict[str, list[Timing]] = {v: [] for v in variants}
    with sandbox(0.0) as url, tempfile.TemporaryDirectory(dir=shm if len(variants) > 3 else None) as tmpfs:
        for i in range(args.repeat):
            for v in variants:
                root = Path(tmpfs) if v.startswith("d") else folder
                t = overhead_once(v, url, root, args, log)
                out[v].append(t)
                if args.verbose:
                    print(f"  repeat {i + 1} {v:28s} wall {t.wall:6.2f} s, span {t.span:6.2f} s", flush=True)
    return out


def print_overhead(timings: dict[str, list[Timing]], args: argparse.Namespace, command: str) -> None:
    n = args.overhead_rows
    print(f"state-file overhead: {n} rows, concurrency {args.overhead_concurrency}, rate 0, no latency, "
          f"{args.repeat} runs of each (interleaved)")
    print(f"  {'variant':30s} {'median wall':>11s} {'rows/s':>7s} {'best':>6s} {'rows/s':>7s}"
          f" {'median span':>11s} {'rows/s':>7s} {'best':>6s} {'rows/s':>7s}")
    figures: dict[str, dict[str, float]] = {}
    for v, ts in timings.items():
        f = figures[v] = {
            "wall": statistics.median(t.wall for t in ts), "wall_best": min(t.wall for t in ts),
            "span": statistics.median(t.span for t in ts), "span_best": min(t.span for t in ts),
        }
        print(f"  {v:30s} {f['wall']:11.2f} {n / f['wall']:7.0f} {f['wall_best']:6.2f} {n / f['wall_best']:7.0f}"
              f" {f['span']:11.2f} {n / f['span']:7.0f} {f['span_best']:6.2f} {n / f['span_best']:7.0f}")
    a, b, c = (figures[next(v for v in timings if v.startswith(x))] for x in "abc")
    for key, label in (("wall", "median wall"), ("wall_best", "best wall"), ("span", "median span"),
                       ("span_best", "best span")):
        print(f"  rows/s ratios, {label + ':':13s} a/b {b[key] / a[key]:.2f}   c/a {a[key] / c[key]:.2f}   "
              f"c/b {b[key] / c[key]:.2f}")
    for v, ts in timings.items():
        print(f"  {v:30s} walls: {' '.join(f'{t.wall:.2f}' for t in ts)}   spans: "
              f"{' '.join(f'{t.span:.2f}' for t in ts)}")
    print(f"  reproduce: {command}")


# --- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs to deliver (default 50)")
    parser.add_argument("--rows", type=int, help="rows in the campaign (default 45 per kill)")
    parser.add_argument("--concurrency", type=int, default=4, help="[sending] concurrency (default 4)")
    parser.add_argument("--latency", type=float, default=0.03, help="sandbox latency in seconds (default 0.03)")
    parser.add_argument("--min-delay", type=float, default=0.3, help="shortest time before a kill (s)")
    parser.add_argument("--max-delay", type=float, default=2.0, help="longest time before a kill (s)")
    parser.add_argument("--seed", type=int, default=20240917, help="seed of the kill delays")
    parser.add_argument("--overhead", action="store_true", help="measure the state-file overhead instead")
    parser.add_argument("--overhead-rows", type=int, default=5000)
    parser.add_argument("--overhead-concurrency", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each overhead variant (median shown)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, state, results)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = 45 * args.kills
    if args.rows > 50000:
        parser.error("--rows is at most 50000 (distinct +1 617 555..559 numbers)")
    flags = ["--overhead", "--overhead-rows", str(args.overhead_rows), "--overhead-concurrency",
             str(args.overhead_concurrency), "--repeat", str(args.repeat)] if args.overhead else [
        "--kills", str(args.kills), "--rows", str(args.rows), "--concurrency", str(args.concurrency),
        "--latency", str(args.latency), "--min-delay", str(args.min_delay), "--max-delay", str(args.max_delay),
        "--seed", str(args.seed)]
    command = shlex.join(["python", "bench/kill_soak.py", *flags])

    try:
        tree = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except OSError:
        tree = ""
    print(f"tree: {tree or 'unknown'}; load average before: {Path('/proc/loadavg').read_text().split()[:3]}",
          flush=True)
    folder = Path(tempfile.mkdtemp(prefix="kill-soak-"))
    ok = True
    with (folder / "runs.log").open("w", encoding="utf-8") as log:
        if args.overhead:
            print_overhead(overhead(args, log, folder), args, command)
        else:
            s = soak(args, log, folder)
            print_soak(s, args, command)
            ok = not s.failures
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")
    if args.keep or not ok:
        print(f"work folder: {folder}")
    else:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
