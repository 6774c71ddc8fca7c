#!/usr/bin/env bash
# The proposed changes of bench/RESULTS.md "Findings", each measured side by side with the
# current code (bench/patched.py patches campaign in the benchmark's process only), plus the
# per-stage costs. About 15 minutes. Outputs in bench/out/latest/.
#   bash bench/run_experiments.sh    (with the project's virtual environment active)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
out=bench/out/latest
mkdir -p "$out"
run() {
    local name=$1 tag=$2
    shift 2
    "$py" -m "bench.$name" "$@" --json "$out/$tag.json" 2>&1 | tee "$out/$tag.txt"
}
run stages stages --rows 20000
run pacing pacing-grid --rates 5 50 200 --seconds 20 --compare pacer-grid
run pacing limiter-alone --rates 5 50 200 1000 --seconds 0 --limiter-alone 4
run throughput throughput-no-status-index --rows 100000 --repeat 2 --compare no-status-index
run throughput throughput-no-rows-phone-index --rows 100000 --repeat 2 --compare no-rows-phone-index
run throughput throughput-no-autocheckpoint --rows 100000 --repeat 2 --compare no-autocheckpoint
# Journal and planner transaction counts of one 100k send (bench.patched stats prints them).
folder=bench/out/runs/stats
mkdir -p "$folder"
rm -f "$folder"/bench.state.sqlite* "$folder"/bench.results.csv
"$py" - "$folder" <<'PY' 2>&1 | tee "$out/journal-stats.txt"
import subprocess, sys
from pathlib import Path
from bench import common
folder = Path(sys.argv[1]).resolve()
with common.fast_server() as server:
    toml = common.campaign_file(folder, common.csv_file(100_000), api_url=server.url, rate=0, concurrency=50)
    for patch in ("stats", "stats,fixed-batches"):
        for leftover in folder.glob("bench.state.sqlite*"):
            leftover.unlink()
        argv = common.campaign_argv("send", str(toml), "--yes", patch=patch)
        print("command:", " ".join(argv))
        m = common.measure(argv, cwd=folder)
        print([line for line in m.output.splitlines() if line.startswith("bench-stats")], "exit", m.returncode)
PY
