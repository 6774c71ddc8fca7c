"""Smoke runs of every benchmark in bench/ at tiny sizes: they run and report, whatever the speed.

Correctness only (exit codes, row counts, every figure present and sane); timings are never
asserted: the real runs are by hand (bench/RESULTS.md). Each script's ``main(argv)`` is called
in this process; the campaigns and servers it drives are subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from bench import loading, memory, pacing, patched, profile, sequential, stages, startup, throughput


def _run(module: Any, tmp_path: Path, *argv: str) -> dict[str, Any]:
    out = tmp_path / "figures.json"
    code = module.main([*argv, "--json", str(out)] + (["--workdir", str(tmp_path)] if _has_workdir(module) else []))
    assert code == 0
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["command"].startswith("python -m bench.")
    assert "nproc" in data["machine"]
    return data


def _has_workdir(module: Any) -> bool:
    return module is not loading


def _positive(*values: Any) -> None:
    for value in values:
        assert isinstance(value, int | float) and value > 0 and math.isfinite(value), value


def test_throughput(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A' with both of this round's changes undone, so the patches behind RESULTS.md's side-by-side
    # figures keep working (run_a checks that every row was sent exactly as without them).
    patches = "inline-prepare,fixed-batches"
    data = _run(throughput, tmp_path, "--rows", "200", "--repeat", "1", "--concurrency", "8", "--compare", patches)
    (pair,) = data["pairs"]
    assert pair["a"]["rows"] == pair["b"]["rows"] == pair["patched"]["rows"] == 200
    assert data["compare"]["patch"] == patches
    _positive(data["compare"]["speed_vs_a"])
    _positive(data["a_rows_per_s"], data["b_rows_per_s"], data["ratio_end_to_end"], data["a_cpu_us_per_row"])
    assert isinstance(data["target_met"], bool)
    assert "A/B end to end" in capsys.readouterr().out


def test_sequential(tmp_path: Path) -> None:
    data = _run(sequential, tmp_path, "--rows", "40", "--latency", "0.01", "--concurrency", "10")
    _positive(data["sequential_time"], data["campaign"]["10"]["speedup"], data["campaign"]["10"]["wall"])


def test_pacing(tmp_path: Path) -> None:
    data = _run(pacing, tmp_path, "--rates", "40", "--seconds", "1", "--compare", "pacer-grid")
    assert [r["variant"] for r in data["runs"]] == ["campaign", "pacer-grid"]
    for run in data["runs"]:
        assert run["rows"] == 40 and run["statuses"] == {"200": 40}
        _positive(run["achieved"], run["span"], run["max_sliding_1s"], run["max_fixed_1s"])
        assert run["max_sliding_1s"] >= run["max_fixed_1s"] - 1
    assert isinstance(data["targets_met"], bool)


def test_grid_limiter_keeps_the_window() -> None:
    async def starts() -> list[float]:
        limiter = patched.GridLimiter(100)
        out = []
        for _ in range(130):
            await limiter.acquire()
            out.append(time.monotonic())
        return out

    times = asyncio.run(starts())
    sliding, _ = pacing.windows(times)
    assert sliding <= 100  # by construction, however loaded the machine (no timing asserted)
    assert times == sorted(times)


def test_pacing_windows() -> None:
    assert pacing.windows([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]) == (5, 5)
    assert pacing.windows([0.0, 0.5, 0.9, 1.05, 1.2]) == (4, 3)


def test_memory(tmp_path: Path) -> None:
    data = _run(memory, tmp_path, "--sizes", "200", "300", "--xlsx-rows", "200", "--commands", "send",
                "--limit-above", "250", "--limit", "100")
    cases = {(c["file"], c["command"]): c for c in data["cases"]}
    assert len(cases) == 3
    assert cases[("contacts-300.csv", "send")]["posted"] == 100
    assert cases[("contacts-200.xlsx", "send")]["posted"] == 200
    for case in cases.values():
        _positive(case["maxrss_mb"], case["wall"])
    assert set(data["verdicts"]) == {"send_under_300mb", "send_growth_within_1.3x"}


def test_memory_check(tmp_path: Path) -> None:
    data = _run(memory, tmp_path, "--sizes", "200", "--xlsx-rows", "0", "--commands", "check")
    (case,) = data["cases"]
    assert case["command"] == "check" and case["rows"] == 200
    _positive(case["maxrss_mb"])


def test_startup(tmp_path: Path) -> None:
    data = _run(startup, tmp_path, "--rows", "300", "--small-rows", "200", "--repeat", "1")
    _positive(data["median"]["big"], data["median"]["small"], data["median"]["version"])


def test_loading(tmp_path: Path) -> None:
    data = _run(loading, tmp_path, "--csv-rows", "200", "--xlsx-rows", "200", "--repeat", "1")
    assert [f["file"] for f in data["files"]] == ["contacts-200.csv", "contacts-200.xlsx"]
    for f in data["files"]:
        _positive(f["chunks_rows_per_s"], f["pandas_rows_per_s"], f["open_rows_per_s"])


def test_stages(tmp_path: Path) -> None:
    data = _run(stages, tmp_path, "--rows", "300")
    assert data["rows"] == 300
    _positive(*data["us_per_row"].values(), *data["us_per_commit"].values())


def test_profile_report(capsys: pytest.CaptureFixture[str]) -> None:
    samples = [
        (["<module> (campaign/__main__.py:5)", "_run_once (asyncio/base_events.py:1)",
          "Journal.flush (campaign/sender.py:156)", "State.write (campaign/state.py:306)"], 3),
        (["<module> (campaign/__main__.py:5)", "normalise (campaign/phones.py:45)", "parse (phonenumbers/x.py:1)"], 1),
    ]
    out = profile.report(samples)
    stages = dict(out["stages"])
    assert stages["journal group commits (Journal.flush -> State.write)"] == 75.0
    assert stages["phone numbers (phones.normalise)"] == 25.0
    assert "functions with the most self time" in capsys.readouterr().out


def test_profile(tmp_path: Path) -> None:
    assert profile.find_py_spy() is not None, "py-spy comes with the test extra"
    data = _run(profile, tmp_path, "--rows", "200", "--concurrency", "8")
    assert data["stages"] and data["self"]
