#!/usr/bin/env bash
# Every benchmark at its full size, one after the other (never in parallel: they would share
# the CPU), each one's output and figures saved in bench/out/latest/. About 15-20 minutes.
#   bash bench/run_all.sh            (with the project's virtual environment active)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
out=bench/out/latest
mkdir -p "$out"
run() {
    local name=$1
    shift
    "$py" -m "bench.$name" "$@" --json "$out/$name.json" 2>&1 | tee "$out/$name.txt"
}
run throughput --rows 100000 --concurrency 50 --repeat 2 --compare inline-prepare
run profile --rows 100000 --concurrency 50
run sequential --rows 2000 --latency 0.02 --concurrency 10 50
run pacing --rates 5 50 200 --seconds 20
run startup --rows 1000000 --repeat 3
run loading --csv-rows 100000 1000000 --xlsx-rows 100000 --repeat 2
run memory --sizes 100000 1000000 --xlsx-rows 100000
