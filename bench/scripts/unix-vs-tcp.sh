#!/usr/bin/env bash
# Unix socket against TCP, as a user would see them: one dflockd process
# serving both listeners, the bench in another process, runs alternating
# tcp, unix, tcp, unix, ... so that drift on a shared machine touches both.
# Prints one line per run and, per worker count, the spread of the
# unix ÷ tcp ratio over the pairs.
#
#   bash bench/scripts/unix-vs-tcp.sh [REPEATS] [ROUNDS] [WORKERS...]
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
port=$(( 20000 + RANDOM % 20000 ))
"$tmp/dflockd" --listen "tcp://127.0.0.1:$port" --listen "unix://$tmp/d.sock" >"$tmp/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [ -S "$tmp/d.sock" ] && break; sleep 0.1; done

bin=$tmp
# shellcheck source=lib.sh
. bench/scripts/lib.sh # the cd above made the repository root the working directory
echo "dflockd pid $pid; $repeats alternating runs of $rounds rounds per worker; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
compare tcp "tcp://127.0.0.1:$port" unix "unix://$tmp/d.sock"
