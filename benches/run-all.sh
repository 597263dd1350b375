#!/usr/bin/env bash
# Produces the README's "Benchmarks" table: the machine, the date, and one row per backend
# and scenario from the throughput runner. Each scenario runs in a process of its own, so its
# peak RSS is its own. Every run checks that each job ran exactly once; any failure stops
# the script with a non-zero exit.
#
#   benches/run-all.sh              # 100,000 jobs per run
#   JOBS=20000 benches/run-all.sh   # quicker
#
# The full log goes to ${OUT:-target/bench-results}/log.txt, the table to table.md there.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-100000}
OUT=${OUT:-target/bench-results}
mkdir -p "$OUT"
log="$OUT/log.txt"
table="$OUT/table.md"
: >"$log"

cargo build --profile bench -p kosh-jobs-benches --bin throughput
bin="${CARGO_TARGET_DIR:-target}/release/throughput"

machine() {
    local cpu ram
    cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    ram=$(free -g | awk '/^Mem:/ {print $2 " GiB"}')
    echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores, ${ram:-? GiB} RAM, Linux $(uname -r)"
    echo "- toolchain: $(rustc --version); $(redis-server --version 2>/dev/null | cut -d' ' -f1-3 || echo 'no redis-server')"
    local dirty=""
    git diff --quiet HEAD 2>/dev/null || dirty=" with uncommitted changes"
    echo "- code: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
}

run() {
    echo "\$ throughput $*" | tee -a "$log"
    # With pipefail, a failed run (e.g. a job that did not run exactly once) stops the script.
    "$bin" --table "$@" | tee -a "$log" >"$OUT/last.txt"
    grep -E '^\| (memory|sqlite|redis) ' "$OUT/last.txt" >>"$table.rows" || true
    grep -vE '^\|' "$OUT/last.txt" | grep -v '^$' || true
}

: >"$table.rows"
machine | tee "$table.head"
for backend in memory sqlite redis; do
    run --backend "$backend" --scenario enqueue --jobs "$JOBS"
    run --backend "$backend" --scenario noop --jobs "$JOBS" --concurrency 1,16,64
    run --backend "$backend" --scenario backlog --jobs "$JOBS" --concurrency 64
    run --backend "$backend" --scenario sleep10 --concurrency 1,16,64
    run --backend "$backend" --scenario latency --concurrency 64
    if [ "$backend" != memory ]; then
        run --backend "$backend" --scenario multiprocess --jobs "$JOBS" --concurrency 64
    fi
done
{
    cat "$table.head"
    echo "- load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| backend | scenario | concurrency | jobs | enqueue (jobs/s) | processing (jobs/s) | pickup p50 / p99 | peak RSS | Redis requests / commands per job |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    cat "$table.rows"
} >"$table"
rm -f "$table.head" "$table.rows"
echo
cat "$table"
