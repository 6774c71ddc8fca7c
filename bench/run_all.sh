#!/usr/bin/env bash
# Every benchmark at its full size, one after the other (never in parallel: they would share
# the CPU), each one's output and figures saved in bench/out/latest/. About 20-25 minutes.
#   bash bench/run_all.sh            (with the project's virtual environment active)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
out=bench/out/latest
mkdir -p "$out"
run() {  # run NAME ARGS...: bench.NAME, saved as NAME.txt / NAME.json
    run_as "$1" "$@"
}
run_as() {  # run_as FILE NAME ARGS...: bench.NAME, saved as FILE.txt / FILE.json
    local file=$1 name=$2
    shift 2
    "$py" -m "bench.$name" "$@" --json "$out/$file.json" 2>&1 | tee "$out/$file.txt"
}
run throughput --rows 100000 --concurrency 50 --repeat 2 --compare inline-prepare
run_as throughput-batches throughput --rows 100000 --concurrency 50 --repeat 2 --compare fixed-batches
run profile --rows 100000 --concurrency 50
run sequential --rows 2000 --latency 0.02 --concurrency 10 50
run pacing --rates 5 50 200 --seconds 20
run startup --rows 1000000 --repeat 3
run loading --csv-rows 100000 1000000 --xlsx-rows 100000 --repeat 2
run memory --sizes 100000 1000000 --xlsx-rows 100000
