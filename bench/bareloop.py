"""Throughput baseline B: a bare aiohttp loop posting pre-serialised bodies, nothing else.

The same rows as ``campaign send`` would post (same JSON shape, rendered with ``str.format``,
serialised before the clock starts), ``concurrency`` workers sharing one ``ClientSession``
with the same connection limit, headers and session settings as campaign's client (no cookie
jar, the URL parsed once: what a careful bare loop would do too, so A and B pay the same for
HTTP), each reading and ``json.loads``-ing every answer.
No phone parsing, no templates, no state file, no pacing, no results file.

Run by ``bench.throughput`` in its own process (so it competes for the CPU exactly as
``campaign send`` does); prints one JSON line. By hand::

    python -m bench.bareloop URL CSV --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from yarl import URL

TEXT = "Hi {first_name}, your order {order_id} is ready for pick-up."


def bodies(path: Path) -> list[bytes]:
    """Every row of the CSV as the request body campaign would send for it."""
    out: list[bytes] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            digits = "".join(c for c in row["Phone"] if c.isdigit())
            body = {
                "provider": "twlo",
                "channel_key": "twlo_16175550100",
                "to": "+" + digits,
                "name": row["Name"],
                "text": TEXT.format(**row),
            }
            out.append(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    return out


async def post_all(url: str, items: list[bytes], concurrency: int) -> dict[str, float | int]:
    headers = {"apikey": "benchuser01:benchsecret0123456789abcdef", "Content-Type": "application/json",
               "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    ok = failed = 0
    index = 0
    target = URL(f"{url}/message")
    async with aiohttp.ClientSession(headers=headers, connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:

        async def worker() -> None:
            nonlocal ok, failed, index
            while index < len(items):
                body = items[index]
                index += 1
                async with session.post(target, data=body) as resp:
                    payload = json.loads(await resp.read())
                if resp.status == 200 and payload.get("status") == "success":
                    ok += 1
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"ok": ok, "failed": failed, "elapsed": elapsed}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bareloop")
    parser.add_argument("url")
    parser.add_argument("csv", type=Path)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    items = bodies(args.csv)
    prepare = time.perf_counter() - t0
    cpu0 = time.process_time()
    result = asyncio.run(post_all(args.url, items, args.concurrency))
    result["loop_cpu"] = time.process_time() - cpu0
    result["prepare"] = prepare
    result["rows"] = len(items)
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result), flush=True)
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
