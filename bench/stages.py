"""The sender's own cost per row, stage by stage, without a profiler.

In this process, on the first ``--rows`` rows of the benchmark CSV and the throughput
campaign (twlo text template, name column), each stage of ``campaign send`` timed alone with
``time.perf_counter`` and the real ``campaign`` code (no copy):

read (``RecipientFile.chunks``), phone (``phones.normalise``), render (``Renderer.render``),
encode + hash, prepare (``Pipeline.prepare``: the three before together), plan
(``Planner.plan``, 256-row transactions into a fresh state file), journal commits
(``State.write`` with 1, 10 and 50 marks per commit, then as many outcomes), export
(``runner.export``: the results CSV from the state file).

Compare with the bare aiohttp loop's CPU per request in ``bench.throughput`` (B): everything
here is what ``campaign send`` pays on top of the HTTP itself.

    python -m bench.stages --rows 20000
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import common


def _time(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    common.header("bench.stages", argv)

    from campaign import phones, prepare, runner
    from campaign.config import load_campaign
    from campaign.render import encode
    from campaign.state import Outcome, State, Status

    folder = common.run_folder("stages", args.workdir)
    common.fresh(folder)
    toml = common.campaign_file(folder, common.csv_file(args.rows), api_url="http://127.0.0.1:9", rate=0,
                                concurrency=50)
    campaign = load_campaign(toml)
    pipeline = prepare.Pipeline(campaign)
    n = args.rows
    us: dict[str, float] = {}

    source: list[runner.SourceRow] = []
    us["read: RecipientFile.chunks"] = _time(lambda: [source.extend(c) for c in pipeline.file.chunks(2048)])
    assert len(source) == n, len(source)
    index, country = pipeline.phone_index, campaign.recipients.default_country
    e164: list[str] = []
    us["phone: phones.normalise"] = _time(lambda: [e164.append(phones.normalise(r.cells[index], country))
                                                   for r in source])
    import phonenumbers

    parsed: list[object] = []
    us["  of which phonenumbers.parse"] = _time(lambda: [parsed.append(phonenumbers.parse(r.cells[index], country))
                                                         for r in source])
    us["  of which phonenumbers.is_valid_number"] = _time(lambda: [phonenumbers.is_valid_number(p) for p in parsed])
    rendered: list[object] = []
    us["render: Renderer.render"] = _time(lambda: [rendered.append(pipeline.renderer.render(r.cells, p))
                                                   for r, p in zip(source, e164, strict=True)])
    us["encode + blake2b"] = _time(lambda: [hashlib.blake2b(encode(x.body), digest_size=12).hexdigest()  # type: ignore[attr-defined]
                                            for x in rendered])
    prepared: list[prepare.Prepared] = []
    us["prepare: Pipeline.prepare (all three)"] = _time(lambda: [prepared.append(pipeline.prepare(r)) for r in source])

    state = State(folder / "bench.state.sqlite")
    state.recover()
    state.begin_run("send", pipeline.file.columns)
    summary = runner.Summary()
    planner = runner.Planner(campaign, state, runner.Options(api_key="x"), summary)
    jobs: list[object] = []
    us["plan: Planner.plan (256-row transactions)"] = _time(
        lambda: [jobs.extend(planner.plan(prepared[i : i + prepare.BATCH])) for i in range(0, n, prepare.BATCH)])
    assert len(jobs) == n
    marks = [(j.key, j.payload_hash, j.message, j.content, j.schedule_at) for j in jobs]  # type: ignore[attr-defined]
    commit: dict[str, float] = {}
    start = 0
    for per in (1, 10, 50):
        count = min(n // 6, 3000) // per * per  # rows marked with this group size
        part = marks[start : start + count]
        seconds = _time(lambda part=part, per=per: [state.write([], part[i : i + per])
                                                     for i in range(0, len(part), per)])
        commit[f"{per} marks"] = 1e6 * seconds / (len(part) // per)
        us[f"journal: State.write, {per} marks per commit"] = seconds * n / len(part)
        start += count
    outcomes = [Outcome(j.key, Status.SENT, f"SM{i:032x}", "", 200, 1) for i, j in enumerate(jobs)]  # type: ignore[attr-defined]
    us["journal: State.write, outcomes 50 per commit"] = _time(
        lambda: [state.write(outcomes[i : i + 50], []) for i in range(0, n, 50)])
    us["export: runner.export (results CSV)"] = _time(lambda: runner.export(state, folder / "bench.results.csv"))
    state.close()

    per_row = {k: 1e6 * v / n for k, v in us.items()}
    print(f"{n:,} rows; µs per row (1 ms = 1000 µs)")
    for name, value in per_row.items():
        print(f"  {value:8.1f}  {name}")
    print("  journal: µs per commit: " + ", ".join(f"{k}: {v:.0f}" for k, v in commit.items()))
    common.write_json(args.json, {"rows": n, "us_per_row": per_row, "us_per_commit": commit,
                                  "command": common.command("bench.stages", argv), "machine": common.machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
