#!/usr/bin/env bash
# Counts the instructions `redis-server` executes per job in a throughput scenario, under
# valgrind's callgrind. Unlike jobs/s or CPU time, the count barely moves when the machine is
# busy or slow, so two versions can be compared on a shared VM (run each a few times: batch
# sizes, and with them the count, still vary by a few percent).
#
#   benches/redis-instructions.sh                      # backlog of 20,000 jobs, concurrency 64
#   SCENARIO=noop JOBS=2000 CONCURRENCY=1 benches/redis-instructions.sh
#   BIN=/path/to/other/throughput benches/redis-instructions.sh   # an older build, same runs
#   SCENARIO=concurrent EXTRA=--no-coalesce benches/redis-instructions.sh   # more runner flags
#
# Needs valgrind (Debian: apt-get install valgrind). Redis under callgrind runs some 50×
# slower, so keep JOBS small. Prints the runner's line and "redis instructions per job: N".
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${SCENARIO:-backlog}
JOBS=${JOBS:-20000}
CONCURRENCY=${CONCURRENCY:-64}
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
    cargo build --profile bench -p kosh-jobs-benches --bin throughput
    BIN="${CARGO_TARGET_DIR:-target}/release/throughput"
fi

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" \
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    >"$dir/valgrind.log" 2>&1 &
vg=$!
trap 'kill "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.2
done
redis-cli -p "$port" ping >/dev/null

# callgrind_control acts when the server next runs: keep it busy with pings meanwhile.
control() {
    callgrind_control "$@" "$vg" >/dev/null &
    local c=$!
    while kill -0 "$c" 2>/dev/null; do redis-cli -p "$port" ping >/dev/null; done
    wait "$c"
}
control -i on
"$BIN" --backend "redis://127.0.0.1:$port" --scenario "$SCENARIO" --jobs "$JOBS" \
    --concurrency "$CONCURRENCY" ${EXTRA:-} | grep -E '^redis'
control -i off
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
wait "$vg" 2>/dev/null || true
total=$(callgrind_annotate "$dir"/cg.out* 2>/dev/null | awk '/PROGRAM TOTALS/ && !n++ {gsub(",", "", $1); print $1}')
echo "redis instructions per job: $((total / JOBS))"
