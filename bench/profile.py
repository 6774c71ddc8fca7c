"""Where ``campaign send`` spends its time: the throughput run (A) under a sampling profiler.

``py-spy record`` (default; samples the subprocess from outside, no code change, ~no overhead)
or ``pyinstrument`` (``--profiler pyinstrument``; in-process, slower). The server is
``bench.fastserver`` in its own process, the campaign is the one of ``bench.throughput``
(``rate = 0``, state file, results file). Prints the share of samples per pipeline stage,
the functions with the most self time, and the ``campaign/*`` lines with the most inclusive
time; the raw stacks stay in the run folder (``pyspy.txt``: collapsed stacks).

    python -m bench.profile --rows 100000 --concurrency 50
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench import common

# First match wins, looking at the whole stack: (stage, frame text that marks it). py-spy sometimes
# shows a coroutine's stack cut short (no event loop frames), hence the library fallbacks.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("imports (python start, module import)", ("_find_and_load", "<module> (campaign/__main__.py:1)")),
    ("validate the file before sending (Pipeline.__init__ / open_recipients)", ("Pipeline.__init__",)),
    ("results file (runner.export: State.results + write_results)", ("export (campaign/runner.py",)),
    ("final counts (State.counts)", ("State.counts",)),
    ("phone numbers (phones.normalise)", ("normalise (campaign/phones.py", "(phonenumbers/")),
    ("templates (Renderer.render)", ("Renderer.render", "(jinja2/", "(<template>")),
    ("encode + hash (Pipeline.prepare rest)", ("Pipeline.prepare",)),
    ("read the CSV in chunks (RecipientFile.chunks)", ("RecipientFile.chunks", "_frames (campaign")),
    ("plan: state inserts + duplicates (Planner.plan)", ("Planner.plan",)),
    ("journal group commits (Journal.flush -> State.write)", ("Journal.flush",)),
    ("HTTP client (SociocsClient.send, aiohttp)", ("SociocsClient.send", "(aiohttp/", "(multidict/", "(yarl/")),
    ("progress callback (printing.ProgressDisplay.update)", ("ProgressDisplay.update", "send.<locals>.progress")),
    ("sender bookkeeping (Sender._worker/_deliver, Journal.mark, Pacer)",
     ("Sender._worker", "Sender._deliver", "Sender._process", "Journal.mark", "Pacer.")),
    ("queue hand-off (Sender.put)", ("Sender.put",)),
    ("event loop: socket reads/writes, callbacks", ("_run_once", "Handle._run")),
)


def find_py_spy() -> str | None:
    """py-spy on PATH, or beside this interpreter (a virtual environment not activated)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def _parse(path: Path) -> list[tuple[list[str], int]]:
    samples = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            samples.append((stack.split(";"), int(n)))
    return samples


def _func(frame: str) -> str:
    """'name (file:line)' -> 'name (file)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else frame


def report(samples: list[tuple[list[str], int]], top: int = 20) -> dict[str, list[tuple[str, float]]]:
    total = sum(n for _, n in samples) or 1
    stages: Counter[str] = Counter()
    self_funcs: Counter[str] = Counter()
    campaign_lines: Counter[str] = Counter()
    campaign_funcs: Counter[str] = Counter()
    commits: Counter[str] = Counter()
    for frames, n in samples:
        joined = ";".join(frames)
        if "_Transaction.__exit__" in joined:
            caller = next((c for c in ("Planner.plan", "Journal.flush", "State.finish_read", "State.end_run")
                           if c in joined), "other")
            commits[f"COMMIT of a transaction, from {caller}"] += n
        stage = next((name for name, marks in STAGES if any(m in joined for m in marks)), "other")
        stages[stage] += n
        self_funcs[_func(frames[-1])] += n
        for frame in set(frames):
            if "(campaign/" in frame:
                campaign_lines[frame] += n
        for func in {_func(f) for f in frames}:
            if "(campaign/" in func:
                campaign_funcs[func] += n

    def share(counter: Counter[str], k: int) -> list[tuple[str, float]]:
        return [(name, 100 * n / total) for name, n in counter.most_common(k)]

    out = {
        "stages": share(stages, len(stages)),
        "self": share(self_funcs, top),
        "campaign_functions": share(campaign_funcs, top),
        "campaign_lines": share(campaign_lines, top),
        "commits": share(commits, len(commits)),
    }
    print(f"{total:,} samples")
    titles = {
        "stages": "share of samples per stage (a sample goes to the first stage its stack matches)",
        "self": "functions with the most self time",
        "campaign_functions": "campaign/* functions, inclusive time",
        "campaign_lines": "campaign/* lines, inclusive time",
        "commits": "SQLite COMMITs (State transaction exits), by caller",
    }
    for key, rows in out.items():
        print(f"\n## {titles[key]}")
        for name, pct in rows:
            print(f"  {pct:5.1f}%  {name}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profiler", choices=("py-spy", "pyinstrument"), default="py-spy")
    parser.add_argument("--rate", type=int, default=250, help="samples per second (py-spy)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--report", type=Path, metavar="RAW", help="only analyse an earlier py-spy raw file")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    common.header("bench.profile", argv)
    if args.report:
        common.write_json(args.json, {"raw": str(args.report), **report(_parse(args.report), args.top),
                                      "command": common.command("bench.profile", argv), "machine": common.machine()})
        return 0
    folder = common.run_folder("profile", args.workdir)
    common.fresh(folder)
    csv_path = common.csv_file(args.rows)
    result: dict[str, object] = {"rows": args.rows, "profiler": args.profiler,
                                 "command": common.command("bench.profile", argv), "machine": common.machine()}
    with common.fast_server() as server:
        toml = common.campaign_file(folder, csv_path, api_url=server.url, rate=0, concurrency=args.concurrency)
        send = ["send", str(toml), "--yes"]
        if args.profiler == "py-spy":
            spy = find_py_spy()
            if spy is None:
                raise SystemExit("py-spy is not installed (pip install py-spy), or use --profiler pyinstrument")
            raw = folder / "pyspy.txt"
            argv_run = [spy, "record", "--rate", str(args.rate), "--format", "raw", "--output", str(raw),
                        "--nonblocking", "--", *common.campaign_argv(*send)]
        else:
            raw = folder / "pyinstrument.txt"
            argv_run = [sys.executable, "-m", "pyinstrument", "--renderer", "text", "--show-all",
                        "--outfile", str(raw), "-m", "campaign", *send]
        m = common.measure(argv_run, cwd=folder)
        if m.returncode != 0:
            raise SystemExit(f"profiled run exited {m.returncode}:\n{m.output[-3000:]}")
        counts = common.count_results(folder / "bench.results.csv")
        if counts.get("sent") != args.rows:
            raise SystemExit(f"expected {args.rows} sent rows, got {counts}")
    print(f"profiled: {common.command('campaign', send)} ({args.rows:,} rows, {m.wall:.1f} s wall under the "
          f"profiler, CPU {m.cpu:.1f} s); raw profile: {raw}")
    result.update(wall=m.wall, cpu=m.cpu, raw=str(raw))
    if args.profiler == "py-spy":
        result.update(report(_parse(raw), args.top))
    else:
        text = raw.read_text()
        print(text)
        result["text"] = text
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
