"""Mutation testing of the safety core with mutmut: which small deliberate bugs the suite misses.

Each module is mutated on its own, in a copy of the working tree (so the checkout is never
touched and two modules never share mutmut's cache), and the suite's in-process tests are run
against every mutant; mutmut runs, for each mutant, only the tests that call the mutated
function. A surviving mutant is a bug the tests cannot see: either a test is missing or the
mutant is equivalent (it changes nothing observable), and ``bench/RESULTS-mutation.md`` says
which for every one.

Tests that start ``campaign`` as a subprocess import the installed, unmutated package, so they
cannot kill a mutant; they are left out (``--ignore``) to save time, with the kill soak and
the benchmark smoke test.

Run by hand, never in CI (about 1-3 minutes per module on 2 cores, plus one clean suite run
per module for mutmut's statistics)::

    pip install -e '.[test]' mutmut
    python -m bench.mutation                       # every core module
    python -m bench.mutation phones results        # some of them
    python -m bench.mutation --show phones         # also print each survivor's diff
    python -m bench.mutation timing --tests tests/test_timing_units.py tests/test_timing.py
                                                   # only these tests: a lower bound, faster
    python -m bench.mutation --recheck results tests/test_results.py
                                                   # each saved survivor against these tests
    python -m bench.mutation runner --show --only 'campaign.runner.x_preview*' --tests tests/test_runner_units.py
                                                   # only these functions' mutants
    python -m bench.mutation runner --collect /tmp/mutation-runner-XXXX
                                                   # a run stopped (killed) before its end: what it tested

Writes ``bench/out/mutation/<module>.json`` (counts and survivor names) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "mutation"
#: The safety core named by issue #11, in pipeline order.
CORE = (
    "phones",
    "prepare",
    "runner",
    "reconcile",
    "sender",
    "api",
    "state",
    "results",
    "delivery",
    "timing",
    "ledger",
    "workers",
    "leases",
    "shared_pacer",
)
#: Modules only a PostgreSQL campaign runs (many workers on one campaign): their tests need the
#: throw-away cluster. Every other module is measured on SQLite alone, which halves the suite;
#: these on PostgreSQL alone (a test marked for SQLite still runs there), since no SQLite half
#: of a test reaches them.
POSTGRESQL_ONLY = frozenset({"workers", "leases", "shared_pacer"})
#: Tests that cannot kill a mutant (they run the unmutated package in a subprocess) or are soaks.
NOT_IN_PROCESS = (
    "tests/test_kill.py",
    "tests/test_bench_smoke.py",
    "tests/test_cli.py",
    "tests/test_secrets.py",
    "tests/test_delivery_cli.py",
)
#: mutmut's statuses that mean a bug could not ship: a test failed, or mypy --strict refused it.
DETECTED = frozenset({"killed", "caught by type check"})
_STATUS = re.compile(r"^\s*(?P<name>\S+): (?P<status>.+)$")


def _backends(module: str) -> str:
    return "postgresql" if module in POSTGRESQL_ONLY else "sqlite"


def _config(module: str, *, type_check: bool, tests: list[str] | None = None) -> str:
    ignores = ", ".join(f'"--ignore={p}"' for p in NOT_IN_PROCESS)
    # mypy --strict (CI runs it) over the mutated package first: a mutant it rejects could never
    # ship, and needs no test run ("caught by type check", counted apart from the kills).
    checker = 'type_check_command = ["mypy", "-O", "json", "--no-warn-unused-ignores"]\n' if type_check else ""
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["campaign/"]\n'
        f'only_mutate = ["campaign/{module}.py"]\n'
        'also_copy = ["samples/", "templates/", "bench/", "docs/", "README.md", "CHANGELOG.md"]\n'
        f'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", {ignores}]\n'
        f"{checker}"
        + (f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n" if tests else "")
    )


def _copy_tree(dest: Path) -> None:
    """The working tree as it is now (tracked and new files, not ignored ones)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run_module(
    module: str,
    *,
    show: bool,
    type_check: bool = True,
    tests: list[str] | None = None,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Mutate ``campaign/<module>.py`` in a scratch copy; return counts and survivors. ``only``:
    mutmut's mutant name patterns (``campaign.runner.x_preview*``): test just those."""
    with tempfile.TemporaryDirectory(prefix=f"mutation-{module}-") as scratch:
        work = Path(scratch)
        _copy_tree(work)
        with (work / "pyproject.toml").open("a", encoding="utf-8") as handle:
            handle.write(_config(module, type_check=type_check, tests=tests))
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TERM": "dumb"}
        env["CAMPAIGN_TEST_BACKENDS"] = _backends(module)
        started = time.monotonic()
        with (OUT / f"{module}.log").open("w", encoding="utf-8") as log:  # mutmut's own output
            subprocess.run(
                ["mutmut", "run", *(only or [])], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        elapsed = time.monotonic() - started
        statuses, diffs = _collect(work, env, show=show)
        if statuses and set(statuses.values()) == {"not checked"}:  # e.g. a test failed with no mutant
            raise RuntimeError(f"mutmut tested no mutant of {module}: see {OUT / f'{module}.log'}")
    return _report(module, statuses, diffs, elapsed, tests)


def _collect(work: Path, env: dict[str, str], *, show: bool) -> tuple[dict[str, str], dict[str, str]]:
    """mutmut's status of every mutant in the scratch copy ``work``, and each survivor's diff."""
    listing = subprocess.run(
        ["mutmut", "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True, check=False
    ).stdout
    statuses: dict[str, str] = {}
    for line in listing.splitlines():
        match = _STATUS.match(line)
        if match:
            statuses[match["name"]] = match["status"].strip()
    diffs = {}
    if show:
        for name in sorted(n for n, status in statuses.items() if status not in DETECTED | {"not checked"}):
            diffs[name] = subprocess.run(
                ["mutmut", "show", name], cwd=work, env=env, capture_output=True, text=True, check=False
            ).stdout
    return statuses, diffs


def collect(module: str, work: Path, tests: list[str] | None) -> dict[str, Any]:
    """The report of a run stopped before its end (its process killed, so its scratch copy
    ``work`` was kept): the mutants tested so far; the rest count as "not checked"."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TERM": "dumb", "CAMPAIGN_TEST_BACKENDS": _backends(module)}
    statuses, diffs = _collect(work, env, show=True)
    return _report(module, statuses, diffs, None, tests)


def _report(
    module: str, statuses: dict[str, str], diffs: dict[str, str], elapsed: float | None, tests: list[str] | None
) -> dict[str, Any]:
    survivors = sorted(name for name, status in statuses.items() if status not in DETECTED | {"not checked"})
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    total = len(statuses)
    killed = counts.get("killed", 0)
    return {
        "module": module,
        "mutants": total,
        "killed": killed,
        "score": round(100 * killed / total, 1) if total else None,
        "counts": counts,
        "survivors": survivors,
        "diffs": diffs,
        "seconds": round(elapsed, 1) if elapsed is not None else None,
        "tests": tests or "the in-process suite",
    }


def apply_diff(diff: str, root: Path) -> bool:
    """Apply one mutant's diff (``mutmut show``) to the files under ``root``; False when it no
    longer applies (the code there changed since the run).

    mutmut 3 numbers a hunk from the start of the mutated *function* and writes its code
    dedented (a method as if at column 0, its docstring's lines as they were), so ``patch``
    cannot place a method's hunk: each hunk is looked up line by line instead, every line at
    the function's own indentation or as written, and must occur exactly once.
    """
    target: Path | None = None
    hunks: list[list[str]] = []
    for line in diff.splitlines():
        if line.startswith("+++ "):
            target = root / line[4:].strip()
        elif line.startswith("@@"):
            hunks.append([])
        elif hunks and line[:1] in (" ", "-", "+", ""):
            hunks[-1].append(line if line else " ")
    if target is None or not target.is_file() or not hunks:
        return False
    lines = target.read_text(encoding="utf-8").split("\n")
    for hunk in hunks:
        old = [line[1:] for line in hunk if line[0] in " -"]
        for indent in ("", "    ", "        "):

            def fits(have: str, want: str, indent: str = indent) -> bool:
                return have in (indent + want, want) if want else not have.strip()

            starts = [i for i in range(len(lines) - len(old) + 1) if all(map(fits, lines[i : i + len(old)], old))]
            if len(starts) == 1:
                at, out = starts[0], []
                for line in hunk:
                    if line[0] == " ":
                        out.append(lines[at])
                    if line[0] in " -":
                        at += 1
                    if line[0] == "+":
                        out.append(indent + line[1:] if line[1:] else "")
                lines[starts[0] : at] = out
                break
        else:
            return False
    target.write_text("\n".join(lines), encoding="utf-8")
    return True


def recheck(module: str, tests: list[str]) -> dict[str, bool]:
    """Each survivor saved by the last ``--show`` run of ``module``, applied by hand (its diff,
    :func:`apply_diff`) to a scratch copy of the working tree, against ``tests``: whether they fail.

    For the tests written after a run: a new run takes as long as the first, this a second
    or two per survivor. Returns ``{mutant: killed}``.
    """
    report = json.loads((OUT / f"{module}.json").read_text(encoding="utf-8"))
    killed: dict[str, bool] = {}
    for name, diff in sorted(report["diffs"].items()):
        with tempfile.TemporaryDirectory(prefix=f"recheck-{module}-") as scratch:
            work = Path(scratch)
            _copy_tree(work)
            if not apply_diff(diff, work):  # the code changed there since the run: measure it again
                print(f"stale    {name} (its diff no longer applies)", flush=True)
                continue
            # CAMPAIGN_TEST_BACKENDS set by the caller wins: a SQLite module's survivors on
            # PostgreSQL's paths (the workers' leases), against tests/test_workers_units.py.
            backends = os.environ.get("CAMPAIGN_TEST_BACKENDS") or _backends(module)
            env = {**os.environ, "PYTHONPATH": str(work), "CAMPAIGN_TEST_BACKENDS": backends}
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                cwd=work, env=env, capture_output=True, text=True, check=False,
            )
            killed[name] = result.returncode != 0
        print(f"{'killed  ' if killed[name] else 'survived'} {name}", flush=True)
    return killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(CORE), help="modules of campaign/ (default: the core)")
    parser.add_argument("--show", action="store_true", help="print each surviving mutant's diff")
    parser.add_argument("--no-type-check", action="store_true", help="test every mutant, even those mypy rejects")
    parser.add_argument(
        "--tests",
        nargs="+",
        metavar="PATH",
        help="only these test files (a lower bound on the whole suite's score, and much faster)",
    )
    parser.add_argument(
        "--recheck", metavar="MODULE", help="apply each survivor of MODULE's last --show run; run the tests given"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="PATTERN", help="only the mutants whose names match (campaign.runner.x_preview*)"
    )
    parser.add_argument(
        "--collect",
        metavar="SCRATCH",
        help="the report of MODULE's run stopped before its end, from its kept scratch copy (/tmp/mutation-MODULE-*)",
    )
    args = parser.parse_args(argv)
    if args.collect:
        [module] = args.modules
        OUT.mkdir(parents=True, exist_ok=True)
        report = collect(module, Path(args.collect), args.tests)
        (OUT / f"{module}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"{module}: {report['counts']}; {len(report['survivors'])} survivors saved for --recheck")
        return 0
    if args.recheck:
        OUT.mkdir(parents=True, exist_ok=True)
        outcome = recheck(args.recheck, args.modules)
        print(f"{sum(outcome.values())} of {len(outcome)} survivors now killed")
        return 0
    if shutil.which("mutmut") is None:
        print("mutmut is not installed: pip install mutmut", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"{'module':<10} {'mutants':>7} {'killed':>7} {'score':>6}  other")
    for module in args.modules:
        report = run_module(
            module, show=args.show, type_check=not args.no_type_check, tests=args.tests, only=args.only
        )
        (OUT / f"{module}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        other = {k: v for k, v in report["counts"].items() if k != "killed"}
        print(f"{module:<10} {report['mutants']:>7} {report['killed']:>7} {report['score']!s:>6}  {other}", flush=True)
        if args.show:
            for diff in report["diffs"].values():
                print(diff)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
