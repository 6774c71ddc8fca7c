"""Reading speed: ``campaign.spreadsheet`` against plain pandas on the same files.

In this process, alternated per repeat, every cell read as text:

* ``open_recipients(path)``: the validation pass done before anything is sent (encoding scan,
  delimiter sniffing, a full parse of a CSV; the zip/XML check and header search of an .xlsx);
* ``.chunks()``: the streaming read the send itself does (each row a ``SourceRow``);
* ``pandas.read_csv(path, dtype=str, keep_default_na=False)`` / ``pandas.read_excel(path, dtype=str)``.

Rows per second = rows / seconds. ``campaign`` reads a CSV twice in all (validation + chunks),
so its figure for a whole send is "open + chunks".

    python -m bench.loading --csv-rows 100000 1000000 --xlsx-rows 100000
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import common


def _timed(fn: Callable[[], int]) -> tuple[float, int]:
    gc.collect()
    started = time.perf_counter()
    n = fn()
    return time.perf_counter() - started, n


def measure(path: Path, rows: int, repeat: int) -> dict[str, float]:
    import pandas as pd

    from campaign.spreadsheet import open_recipients

    excel = path.suffix == ".xlsx"
    best: dict[str, float] = {}

    def record(name: str, seconds: float, n: int) -> None:
        if n != rows:
            raise SystemExit(f"{name} read {n} rows of {path.name}, expected {rows}")
        best[name] = min(best.get(name, float("inf")), seconds)

    def read_pandas() -> int:
        if excel:
            return len(pd.read_excel(path, dtype=str, engine="openpyxl"))
        return len(pd.read_csv(path, dtype=str, keep_default_na=False))

    def read_campaign() -> None:
        started = time.perf_counter()
        file = open_recipients(path)
        record("open", time.perf_counter() - started, rows)
        record("chunks", *_timed(lambda: sum(len(c) for c in file.chunks())))

    for i in range(repeat):
        order = ["campaign", "pandas"] if i % 2 == 0 else ["pandas", "campaign"]
        for who in order:
            if who == "pandas":
                record("pandas", *_timed(read_pandas))
                continue
            gc.collect()
            read_campaign()
    best["open_plus_chunks"] = best["open"] + best["chunks"]
    return best


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.loading", description=__doc__.split("\n")[0])
    parser.add_argument("--csv-rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--xlsx-rows", type=int, nargs="*", default=[100_000])
    parser.add_argument("--repeat", type=int, default=2, help="best of N, alternating the order")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    common.header("bench.loading", argv)
    files = [(common.csv_file(n), n) for n in args.csv_rows] + [(common.xlsx_file(n), n) for n in args.xlsx_rows]
    results = []
    print(f"best of {args.repeat}; rows/s (seconds)")
    for path, rows in files:
        best = measure(path, rows, args.repeat)
        r = {"file": path.name, "rows": rows, **{f"{k}_s": v for k, v in best.items()},
             **{f"{k}_rows_per_s": rows / v for k, v in best.items()}}
        r["chunks_vs_pandas"] = best["pandas"] / best["chunks"]
        r["open_plus_chunks_vs_pandas"] = best["pandas"] / best["open_plus_chunks"]
        results.append(r)
        print(f"  {path.name:24s} open_recipients {rows / best['open']:>10,.0f} ({best['open']:.2f} s) | "
              f"chunks() {rows / best['chunks']:>10,.0f} ({best['chunks']:.2f} s) | open + chunks "
              f"{rows / best['open_plus_chunks']:>10,.0f} | pandas {rows / best['pandas']:>10,.0f} "
              f"({best['pandas']:.2f} s) | chunks/pandas speed {r['chunks_vs_pandas']:.2f}x, "
              f"open+chunks/pandas {r['open_plus_chunks_vs_pandas']:.2f}x", flush=True)
    common.write_json(args.json, {"files": results, "command": common.command("bench.loading", argv),
                                  "machine": common.machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
