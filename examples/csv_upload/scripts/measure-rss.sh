#!/usr/bin/env bash
# Peak memory of importing a large generated statement: `serve` and `worker` as separate
# processes on SQLite files in a temporary folder, each under /usr/bin/time -v.
#
#   examples/csv_upload/scripts/measure-rss.sh [size-in-MB]   (default 100)
#
# Needs a release build (`cargo build --release -p csv_upload`), curl and GNU time.
set -euo pipefail
MB=${1:-100}
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin=${CSV_UPLOAD_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/csv_upload}
[ -x "$bin" ] || { echo "build first: cargo build --release -p csv_upload" >&2; exit 1; }
work=$(mktemp -d)
serve_pid= worker_pid=
trap 'kill $serve_pid $worker_pid 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"

# ~40 bytes a row; quoted payees with the delimiter inside, decimal commas, European dates.
awk -v bytes=$((MB * 1024 * 1024)) 'BEGIN {
  print "Booking Date;Payee;Memo;Amount"; n = 0; size = 31
  while (size < bytes) {
    n++; line = sprintf("%02d.%02d.2024;\"Shop %d; Branch\";Card;-%d,%02d", 1 + n % 28, 1 + n % 12, n % 997, n % 5000, n % 100)
    print line; size += length(line) + 1
  }
}' > statement.csv
rows=$(($(wc -l < statement.csv) - 1))
echo "generated $(du -m statement.csv | cut -f1) MB, $rows rows"

export DATABASE_URL="sqlite://$work/app.db" JOBS_URL="sqlite://$work/jobs.db" \
  UPLOAD_DIR="$work/uploads" MAX_UPLOAD_BYTES=$((MB * 2 * 1024 * 1024)) BIND=127.0.0.1:3999 RUST_LOG=warn
/usr/bin/time -v -o serve.time "$bin" serve > serve.log 2>&1 & serve_pid=$!
/usr/bin/time -v -o worker.time "$bin" worker --concurrency 1 > worker.log 2>&1 & worker_pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:3999/healthz > /dev/null && break; sleep 0.1; done

start=$(date +%s.%N)
id=$(curl -sf -F "file=@statement.csv;type=text/csv" http://127.0.0.1:3999/api/imports | sed 's/.*"id":\([0-9]*\).*/\1/')
echo "uploaded as import $id in $(echo "$(date +%s.%N) - $start" | bc) s"
while :; do
  s=$(curl -sf "http://127.0.0.1:3999/api/imports/$id")
  case "$s" in *'"state":"completed"'*|*'"state":"failed"'*) break ;; esac
  sleep 1
done
echo "import finished in $(echo "$(date +%s.%N) - $start" | bc) s: $(echo "$s" | grep -o '"rows_imported":[0-9]*' | head -1), $(echo "$s" | grep -o '"state":"[a-z]*"' | head -1)"
# Stop the programs, not /usr/bin/time, so that it writes its report.
kill -TERM $(pgrep -P $worker_pid) $(pgrep -P $serve_pid); wait $worker_pid $serve_pid || true
echo "peak RSS (VmHWM): worker $(grep 'Maximum resident' worker.time | awk '{print $NF}') KB, web $(grep 'Maximum resident' serve.time | awk '{print $NF}') KB"
