#!/usr/bin/env bash
# Rebuild and audit-query benchmark. In one fresh database: pgbench's own TPS (the yardstick),
# then a generated history (WEBINARS x 15 events, default ~1 M), then a rebuild of every read
# model (events/s, and the ratio to pgbench's TPS), then the audit log's filters on that history.
# Each rebuild is the real one: into a shadow schema in committed batches, indexes, swap.
# Usage: bash bench/rebuild.sh   (WEBINARS=10000 for a quick run; BENCH_ADMIN_URL to change server)
set -euo pipefail
cd "$(dirname "$0")/.."
WEBINARS=${WEBINARS:-66667}
ADMIN=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB="webinar_bench_$$"
URL="${ADMIN%/*}/$DB"
cargo build --release -q -p webinar-api
BIN=target/release/webinar
psql "$ADMIN" -qc "create database $DB"
trap 'psql "$ADMIN" -qc "drop database if exists $DB with (force)" >/dev/null' EXIT

pgbench -i -q -s 10 "$URL" >/dev/null 2>&1
TPS=$(pgbench -c 2 -j 2 -T 15 "$URL" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)
echo "pgbench (TPC-B-like, 2 clients, 15 s): $TPS tps"

DATABASE_URL="$URL" WEBINAR_LOG_FORMAT=json RUST_LOG=warn "$BIN" history generate --webinars "$WEBINARS"
# A log of a million events is old: vacuumed (hint bits set) like any table autovacuum has visited.
psql "$URL" -qc "vacuum (analyze) events" >/dev/null
for projector in gateways gateway_reservations webinars live_events chat_messages audit_log stats; do
  # Each rebuild starts from a clean checkpoint: none pays for flushing the previous one's pages.
  psql "$URL" -qc "checkpoint" >/dev/null
  line=$(DATABASE_URL="$URL" RUST_LOG=warn WEBINAR_LOG_FORMAT=json "$BIN" projections rebuild "$projector" 2>/dev/null)
  rate=$(echo "$line" | sed -n 's/.*(\([0-9]*\) events\/s).*/\1/p')
  ratio=$(python3 -c "print(f'{$rate / $TPS:.1f}')")
  echo "$line  = ${ratio}x pgbench tps"
done

echo "audit log filters on $(psql "$URL" -Atc 'select count(*) from audit_log') rows (first page of 101, warm):"
query() {
  local label=$1 where=$2
  ms=$(psql "$URL" -Atc "explain (analyze, format json) select * from audit_log where $where order by tx_id, global_position limit 101" \
       | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Execution Time"])')
  printf '  %-28s %8.3f ms\n' "$label" "$ms"
}
AGG=$(psql "$URL" -Atc "select aggregate_id from audit_log where aggregate_type = 'Webinar' order by global_position desc limit 1")
COR=$(psql "$URL" -Atc "select correlation_id from audit_log order by global_position desc limit 1")
query "no filter" "true"
query "aggregate" "aggregate_type = 'Webinar' and aggregate_id = '$AGG'"
query "actor" "actor_id = 'owner-499'"
query "event type" "event_type = 'MeetingEnded'"
query "correlation" "correlation_id = '$COR'"
query "time range" "recorded_at >= now() - interval '1 day'"
