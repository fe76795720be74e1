#!/usr/bin/env bash
# Hot-path benchmark. In one fresh database and one run: pgbench's INSERT of an event-shaped row
# (32 clients) and SELECT of the live page's 50 rows (64 clients), the yardsticks; then, against
# `webinar serve` (release) with simulated BigBlueButton and SIPMediaGW on loopback: P2 the live
# page (wrk) and P7 memory (here), then `tests/src/bin/loadgen.rs`: P1 mutations, P3 change to
# subscription, P6 stop/restart answers, P8 subscribers at 1,000 / 5,000 / 10,000. One line per
# figure, with its ratio to the pgbench figure of the same run. Installs wrk when missing.
# Usage: bash bench/perf.sh   (after `cargo build --release --bins`; BENCH_ADMIN_URL to change
# server; SUBSCRIBERS="1000 5000 10000" to change P8's sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SUBSCRIBERS=${SUBSCRIBERS:-1000 5000 10000}
DB="webinar_perf_$$"
URL="${ADMIN%/*}/$DB"
SECRET="perf-$(date +%s%N)"
PORT=${BENCH_PORT:-18080}
GW_PORT=$((PORT + 1))
BBB_PORT=$((PORT + 2))
WORK=$(mktemp -d)
# 10,000 WebSockets on each side, plus the pool.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# wrk drives P2: a client as lean as pgbench (ours would use more CPU than the server it measures).
if ! command -v wrk >/dev/null; then
  apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } \
    || { echo "bench/perf.sh needs wrk (apt-get install wrk)"; exit 1; }
fi
cargo build --release -q -p webinar-api -p webinar-tests --bins
BIN=target/release/webinar
LOADGEN=target/release/loadgen

pids=()
cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    echo "failed ($status); the server's last lines:"; tail -n 20 "$WORK/server.log" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$ADMIN" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql "$ADMIN" -qc "create database $DB"
echo "machine: $(nproc) cores, $(psql "$ADMIN" -Atc 'show server_version'), $(date -u +%FT%TZ)"

# `pgbench`'s figures: transactions per second and average latency in ms.
pgbench_run() {
  local clients=$1 script=$2 out
  out=$(pgbench -n -M prepared -c "$clients" -j 2 -T 10 -f "$script" "$URL" 2>/dev/null)
  echo "$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -n 1) $(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")"
}

# Yardstick 1: a single-row INSERT into a table shaped like the event log (same columns, keys,
# identity and indexes; no trigger).
DATABASE_URL="$URL" RUST_LOG=warn WEBINAR_LOG_FORMAT=json "$BIN" migrate >/dev/null
psql "$URL" -qc "create table bench_events (like events including all)"
cat >"$WORK/insert.sql" <<'SQL'
insert into bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
values ('Webinar', gen_random_uuid()::text, 1, 'WebinarDetailsChanged', '1.0',
        '{"title":"Algorithms 1, week 3"}', '{"actor":"prof-1","correlation_id":"4f1c8f3e-5b8a-4d0e-9a57-0c1f5e2d7a11"}');
SQL
read -r INSERT_TPS INSERT_MS < <(pgbench_run 32 "$WORK/insert.sql")
echo "pgbench INSERT of an event-shaped row, 32 clients: $INSERT_TPS tps, latency $INSERT_MS ms"

# The server, its simulated peers, and the webinars the load needs.
for port in "$GW_PORT" "$((PORT + 3))"; do
  "$BIN" sim sipmediagw --api legacy --listen "127.0.0.1:$port" --slots 8 --token "$SECRET" >"$WORK/gw-$port.log" 2>&1 &
  pids+=($!)
done
"$BIN" sim bbb --listen "127.0.0.1:$BBB_PORT" --secret "$SECRET" >"$WORK/bbb.log" 2>&1 &
pids+=($!)
DATABASE_URL="$URL" WEBINAR_LISTEN="127.0.0.1:$PORT" WEBINAR_JWT_SECRET="$SECRET" \
  WEBINAR_BBB_URL="http://127.0.0.1:$BBB_PORT/bigbluebutton/api" WEBINAR_BBB_SECRET="$SECRET" \
  WEBINAR_GATEWAY_ALLOWED_NETWORKS=127.0.0.0/8 WEBINAR_LOG_FORMAT=json RUST_LOG=warn \
  WEBINAR_CHAT_RATE_LIMIT=1000000 WEBINAR_CHAT_WEBINAR_RATE_LIMIT=1000000000 \
  WEBINAR_MAX_UPCOMING_WEBINARS_PER_OWNER=100 \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
pids+=("$SERVER")
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
kill -0 "$SERVER" 2>/dev/null || { echo "the server did not start (port $PORT taken? BENCH_PORT changes it)"; exit 1; }
"$LOADGEN" seed "http://127.0.0.1:$PORT" "$SECRET" "$WORK/seeded.json" \
  "http://127.0.0.1:$GW_PORT,http://127.0.0.1:$((PORT + 3))"

# Yardstick 2: the live page's first 50 rows, as the anonymous page asks for them.
cat >"$WORK/select.sql" <<'SQL'
select live_event_id, title, description, starts_at, ends_at, hls_url, broadcaster, status,
       stream_state, chat_enabled, restricted, groups, presenters
  from live_events where not restricted order by starts_at, live_event_id limit 50;
SQL
read -r SELECT_TPS SELECT_MS < <(pgbench_run 64 "$WORK/select.sql")
echo "pgbench SELECT of the live page's 50 rows, 64 clients: $SELECT_TPS tps, latency $SELECT_MS ms"

rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER/status"; }
echo "P7 resident memory, idle: $(rss_mib) MiB (no pgbench counterpart)"

# P2: the anonymous live page, as the page asks for it, 64 connections; the answer checked first.
PAGE='{ liveEvents(first: 50) { edges { node { id title description startAt endAt hlsUrl broadcaster status streamState chatEnabled restricted presenters { id name } } } } }'
BODY=$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$PAGE")
rows=$(curl -s "http://127.0.0.1:$PORT/graphql" -H 'content-type: application/json' -d "$BODY" \
  | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["liveEvents"]["edges"]))')
[ "$rows" = 50 ] || { echo "the live page has $rows rows, not 50"; exit 1; }
cat >"$WORK/page.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[$BODY]]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %f %d %f %f\\n", summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
( while kill -0 "$SERVER" 2>/dev/null; do rss_mib; echo; sleep 0.2; done ) >"$WORK/rss" &
sampler=$!
read -r _ requests seconds failed p50 p99 < <(wrk -t 2 -c 64 -d 15s -s "$WORK/page.lua" \
  "http://127.0.0.1:$PORT/graphql" | grep '^WRK')
kill "$sampler" 2>/dev/null || true
peak=$(sort -n "$WORK/rss" | tail -n 1)
python3 - "$requests" "$seconds" "$failed" "$p50" "$p99" "$SELECT_TPS" <<'PY'
import sys
requests, seconds, failed, p50, p99, select = sys.argv[1:]
rate = int(requests) / float(seconds)
print(f"P2 liveEvents(first: 50), anonymous, 64 connections (wrk): {rate:.0f}/s, p50 {float(p50):.1f} ms, "
      f"p99 {float(p99):.1f} ms, {failed} failed = {rate / float(select):.3f}x pgbench SELECT of the same 50 rows "
      f"(target >= 2x, p99 < 10 ms)")
PY
echo "P7 resident memory, under P2: $peak MiB peak (no pgbench counterpart)"

# shellcheck disable=SC2086
"$LOADGEN" run "http://127.0.0.1:$PORT" "$SECRET" "$WORK/seeded.json" "$SERVER" \
  "$INSERT_TPS" "$INSERT_MS" "$SELECT_MS" $SUBSCRIBERS
if grep -q '"level":"ERROR"' "$WORK/server.log"; then
  echo "the server logged errors:"; grep '"level":"ERROR"' "$WORK/server.log" | head -n 5
fi
