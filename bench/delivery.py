"""Delivery reports per second that ``campaign listen`` records, and its memory as they pile up.

``campaign listen`` runs as a subprocess (its own process, as in production) with
``SOCIOCS_WEBHOOK_SECRET`` set, on a campaign whose state file is seeded with ``--recipients``
sent rows (message ids ``SM0``... ). This process posts ``--reports`` signed status reports
over HTTP on loopback with ``--concurrency`` connections, cycling through the message ids
(sent, then delivered, then read: each report is committed and changes a row's status), and
checks every answer is 200. A report answered 200 is committed (the listener answers after
the commit), so reports/s is the rate of durable records.

The listener's RSS (``/proc/<pid>/status`` VmRSS) is sampled every tenth of the run; its
high-water mark (VmHWM) is read before it stops. Bounded memory means RSS flat after warm-up.

    python -m bench.delivery --reports 1000000 --recipients 100000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bench import common
from campaign import store
from campaign.config import load_campaign
from campaign.delivery import SIGNATURE_HEADER, sign

SECRET = "bench-webhook-secret"
_WORDS = ("sent", "delivered", "read")


def _seed(folder: Path, recipients: int) -> Path:
    """A campaign file and its state (the SQLite file, or PostgreSQL's with CAMPAIGN_STATE_URL)
    holding ``recipients`` sent rows with message ids."""
    common.fresh(folder)
    contacts = folder / "contacts.csv"
    contacts.write_text("Phone,Name\n+16175550100,A\n", encoding="utf-8")
    toml = common.campaign_file(folder, contacts, api_url="http://127.0.0.1:9", rate=1, concurrency=1)
    state = store.open_state(load_campaign(toml))
    try:
        with state.transaction():
            state.db.executemany(
                "INSERT INTO recipients (key, phone, row, status, message_id, created_at, updated_at)"
                " VALUES (?, ?, ?, 'sent', ?, 'x', 'x')",
                ((f"k{i}", f"+1617{i:07d}", i + 2, f"SM{i}") for i in range(recipients)),
            )
    finally:
        state.close()
    return toml


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _post_all(url: str, reports: int, recipients: int, concurrency: int, pid: int) -> dict[str, object]:
    next_i = 0
    bad = 0
    samples: list[tuple[int, float]] = []
    step = max(1, reports // 10)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_i, bad
        while next_i < reports:
            i = next_i
            next_i += 1
            word = _WORDS[(i // recipients) % len(_WORDS)]
            body = json.dumps(
                {"message_id": f"SM{i % recipients}", "event": "status_update", "event_data": {"status": word}}
            ).encode()
            headers = {SIGNATURE_HEADER: sign(SECRET, body), "Content-Type": "application/json"}
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                bad += resp.status != 200
            if (i + 1) % step == 0:
                samples.append((i + 1, _rss_mb(pid)))

    connector = aiohttp.TCPConnector(limit=concurrency)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    wall = time.monotonic() - started
    return {"wall": wall, "not_200": bad, "rss_samples_mb": samples, "reports_per_s": reports / wall}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    common.header("bench.delivery", list(argv if argv is not None else sys.argv[1:]))
    folder = common.run_folder("delivery", args.workdir)
    toml = _seed(folder, args.recipients)
    env = {**common._env(), "SOCIOCS_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [*common.campaign_argv("listen", str(toml), "--port", "0", "--results-every", "0")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=folder,
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            match = re.search(r"http://\S+/webhooks/sociocs", line)
            if match:
                url = match.group(0)
                break
        if not url:
            print("campaign listen did not start", file=sys.stderr)
            return 1
        idle_mb = _rss_mb(proc.pid)
        figures = asyncio.run(_post_all(url, args.reports, args.recipients, args.concurrency, proc.pid))
        peak_mb = _rss_mb(proc.pid, "VmHWM")
        end_mb = _rss_mb(proc.pid)
    finally:
        proc.terminate()
        code = proc.wait(60)
        if proc.stdout is not None:
            proc.stdout.close()
    db = store.open_state(load_campaign(toml))
    try:
        events = int(db.db.execute("SELECT count(*) FROM delivery_events").fetchone()[0])
    finally:
        db.close()
    rate = float(figures["reports_per_s"])  # type: ignore[arg-type]
    print(f"reports: {args.reports:,} over {args.concurrency} connections, {args.recipients:,} message ids")
    print(f"recorded: {events:,} events; answers not 200: {figures['not_200']}; listener exit code {code}")
    print(f"throughput: {rate:,.0f} reports/s ({float(figures['wall']):.1f} s)")  # type: ignore[arg-type]
    print(f"listener RSS: {idle_mb:.1f} MB idle, {end_mb:.1f} MB at the end, peak {peak_mb:.1f} MB")
    print("RSS samples (reports, MB): " + ", ".join(f"{n:,}: {mb:.1f}" for n, mb in figures["rss_samples_mb"]))  # type: ignore[attr-defined]
    common.write_json(
        args.json,
        {
            "command": common.command("bench.delivery", list(argv or [])),
            "machine": common.machine(),
            "reports": args.reports,
            "events": events,
            "listener_exit": code,
            "idle_mb": idle_mb,
            "end_mb": end_mb,
            "peak_mb": peak_mb,
            **figures,
        },
    )
    ok = events == args.reports and figures["not_200"] == 0 and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
