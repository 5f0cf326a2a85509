#!/usr/bin/env bash
# Interleaved before/after for one hot path: `GET /users/me/` on a fresh SQLite file, each
# binary in turn, ROUNDS times, so that the VM's drift falls on every binary alike. The
# figures of one round differ by the noise; a change counts only when its gain is larger
# than the spread of its own rounds (BENCHMARKS.md, "How a change earns its place").
#
#   usage: bench/ab.sh LABEL=BINARY [LABEL=BINARY ...]
#   env:   ROUNDS (3), DURATION (6), WARMUP (2), C_ME (32), BENCH_DIR (../shared/bench),
#          SCENARIO (me | me-key | login | refresh; me-key: /users/me with an API key;
#          refresh uses bench/refresh.lua chains)
set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$(cd "${BENCH_DIR:-$ROOT/../shared/bench}" && pwd)
ROUNDS=${ROUNDS:-3}
SCENARIO=${SCENARIO:-me}
PORT=8000
BASE="http://127.0.0.1:$PORT"
PASSWORD="Bench-pass-12345"

wait_up() {
    for _ in $(seq 1 150); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "server at $1 did not come up" >&2
    return 1
}

# one LABEL BINARY: a fresh server, a user, then the scenario; prints one result line.
one() {
    local label=$1 binary=$2 dir pid token line
    dir=$(mktemp -d)
    taskset -c 0 env -C "$dir" DATABASE_URL="sqlite://$dir/authd.db" AUTHD_ADDR="127.0.0.1:$PORT" \
        AUTHD_LOGIN_RATE_PER_MIN=0 RUST_LOG=warn "$binary" &
    pid=$!
    wait_up "$BASE/readyz"
    curl -sf -o /dev/null -X POST "$BASE/users" -H 'Content-Type: application/json' \
        -d "{\"username\": \"loadtest\", \"password\": \"$PASSWORD\"}"
    case $SCENARIO in
        me|me-key)
            token=$(curl -sf -X POST "$BASE/token" -d username=loadtest --data-urlencode "password=$PASSWORD" \
                | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
            if [ "$SCENARIO" = me-key ]; then
                # The same requests with an API key as the Bearer credential.
                token=$(curl -sf -X POST "$BASE/users/me/api-keys" -H "Authorization: Bearer $token" \
                    -H 'Content-Type: application/json' -d '{"name": "bench"}' \
                    | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
            fi
            TOKEN=$token BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
                wrk -t1 -c"${C_ME:-32}" -d"${WARMUP:-2}s" -s "$BENCH/lua/me.lua" "$BASE" >/dev/null
            line=$(TOKEN=$token BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
                wrk -t1 -c"${C_ME:-32}" -d"${DURATION:-6}s" -s "$BENCH/lua/me.lua" "$BASE" | grep WRK_RESULT)
            ;;
        login)
            # The harness's login scenario over 32 users: logins of many users at once, as
            # in life (16 at once on one name would be throttled, as they should).
            : > "$dir/users"
            for i in $(seq 0 31); do
                curl -sf -o /dev/null -X POST "$BASE/users" -H 'Content-Type: application/json' \
                    -d "{\"username\": \"loadtest$i\", \"password\": \"$PASSWORD\"}"
                echo "loadtest$i $PASSWORD" >> "$dir/users"
            done
            USERS_FILE="$dir/users" BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
                wrk -t1 -c16 -d"${WARMUP:-2}s" -s "$BENCH/lua/login.lua" "$BASE" >/dev/null
            line=$(USERS_FILE="$dir/users" BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
                wrk -t1 -c16 -d"${DURATION:-6}s" -s "$BENCH/lua/login.lua" "$BASE" | grep WRK_RESULT)
            ;;
        refresh)
            local conns=16 chains=64 file
            for f in warmup measured; do
                file="$dir/$f.tokens"
                : > "$file"
                for _ in $(seq $chains); do
                    { curl -sf -X POST "$BASE/token" -d username=loadtest --data-urlencode "password=$PASSWORD"; echo; } \
                        | sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p' >> "$file"
                done
            done
            REFRESH_TOKENS_FILE="$dir/warmup.tokens" BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
                wrk -t1 -c$conns -d"${WARMUP:-2}s" -s "$ROOT/bench/refresh.lua" "$BASE" >/dev/null
            line=$(REFRESH_TOKENS_FILE="$dir/measured.tokens" BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
                wrk -t1 -c$conns -d"${DURATION:-6}s" -s "$ROOT/bench/refresh.lua" "$BASE" | grep WRK_RESULT)
            ;;
    esac
    echo "label=$label round=$round scenario=$SCENARIO ${line#WRK_RESULT }"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

for round in $(seq 1 "$ROUNDS"); do
    for pair in "$@"; do
        one "${pair%%=*}" "${pair#*=}"
    done
done
