#!/usr/bin/env bash
# What the admin listener and its metrics cost the request path, as a user
# would see it: two dflockd processes from the same build, one plain and
# one with --admin-listen whose /metrics is scraped every second, and the
# bench in a third process, runs alternating plain, metrics, plain, ... so
# that drift on a shared machine touches both. Prints each run and, per
# worker count, the spread of metrics ÷ plain throughput.
#
#   bash bench/scripts/metrics-cost.sh [REPEATS] [ROUNDS] [WORKERS...]
#
# Defaults: 5 repeats, 2000 rounds, workers 1 10 50 100.
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats=${1:-5}
rounds=${2:-2000}
shift $(( $# > 2 ? 2 : $# ))
workers=("$@")
[ ${#workers[@]} -gt 0 ] || workers=(1 10 50 100)

tmp=$(mktemp -d)
go build -o "$tmp/" ./cmd/dflockd ./cmd/bench
base=$(( 20000 + RANDOM % 20000 ))
plain=$base metrics=$((base + 1)) admin=$((base + 2))
"$tmp/dflockd" --port "$plain" >"$tmp/plain.log" 2>&1 &
p1=$!
"$tmp/dflockd" --port "$metrics" --admin-listen "127.0.0.1:$admin" >"$tmp/metrics.log" 2>&1 &
p2=$!
scraper=
cleanup() {
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
  kill "$p1" "$p2" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
( while :; do curl -fsS -o /dev/null "http://127.0.0.1:$admin/metrics" || true; sleep 1; done ) &
scraper=$!

bin=$tmp
# shellcheck source=lib.sh
. bench/scripts/lib.sh # the cd above made the repository root the working directory
series=$(curl -fsS "http://127.0.0.1:$admin/metrics" | grep -c '^dflockd_' || true)
echo "plain pid $p1, metrics pid $p2 ($series dflockd_ series, scraped every 1 s); $repeats alternating runs of $rounds rounds; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
compare plain "127.0.0.1:$plain" metrics "127.0.0.1:$metrics"
