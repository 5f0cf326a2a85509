#!/usr/bin/env bash
# User-space instructions per `GET /users/me/` on SQLite, counted by valgrind's callgrind:
# a figure that, unlike req/s, does not move with the VM's speed, for changes too small to
# show above the noise of an interleaved wrk run. The kernel's share (the socket calls) is
# not counted. The server runs under callgrind with instrumentation off until a warm-up has
# passed; then the counters run for DURATION seconds of wrk load.
#
#   usage: bench/instructions.sh LABEL=BINARY [LABEL=BINARY ...]
#   env:   DURATION (10), C_ME (32), BENCH_DIR (../shared/bench), OUT (a temporary dir)
#   prints one `label=... requests=... instructions=... per_request=...` line per binary;
#   `callgrind_annotate OUT/LABEL.cg.1` shows where they went.
set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$(cd "${BENCH_DIR:-$ROOT/../shared/bench}" && pwd)
OUT=${OUT:-$(mktemp -d)}
PORT=8000
BASE="http://127.0.0.1:$PORT"
PASSWORD="Bench-pass-12345"
command -v valgrind >/dev/null || { echo "valgrind is missing" >&2; exit 1; }

for pair in "$@"; do
    label=${pair%%=*}
    binary=${pair#*=}
    dir=$(mktemp -d)
    env -C "$dir" DATABASE_URL="sqlite://$dir/authd.db" AUTHD_ADDR="127.0.0.1:$PORT" \
        AUTHD_LOGIN_RATE_PER_MIN=0 RUST_LOG=warn \
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$label.cg" \
        "$binary" 2> "$OUT/$label.valgrind.log" &
    pid=$!
    for _ in $(seq 1 600); do curl -sf -o /dev/null "$BASE/readyz" && break; sleep 0.2; done
    curl -sf -o /dev/null -X POST "$BASE/users" -H 'Content-Type: application/json' \
        -d "{\"username\": \"loadtest\", \"password\": \"$PASSWORD\"}"
    token=$(curl -sf -X POST "$BASE/token" -d username=loadtest --data-urlencode "password=$PASSWORD" \
        | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    TOKEN=$token BENCH_LUA_DIR="$BENCH/lua" \
        wrk -t1 -c"${C_ME:-32}" -d3s -s "$BENCH/lua/me.lua" "$BASE" > /dev/null
    callgrind_control -i on "$pid" > /dev/null 2>&1
    requests=$(TOKEN=$token BENCH_LUA_DIR="$BENCH/lua" \
        wrk -t1 -c"${C_ME:-32}" -d"${DURATION:-10}s" -s "$BENCH/lua/me.lua" "$BASE" \
        | sed -n 's/^WRK_RESULT.* requests=\([0-9]*\).*/\1/p')
    callgrind_control -i off "$pid" > /dev/null 2>&1
    # The dump holds the counts of the measured window only (instrumentation was off before).
    callgrind_control -d "$pid" > /dev/null 2>&1
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    instructions=$(awk '/^totals:/ { print $2 }' "$OUT/$label.cg.1")
    echo "label=$label requests=$requests instructions=$instructions" \
        "per_request=$((instructions / requests))"
done
