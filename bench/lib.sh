# Helpers shared by bench/run.sh and bench/scale.sh; sourced, not run. Expects ROOT, BENCH, OUT;
# checks the tools and creates OUT with an empty lines.txt.

PORT=8000
BASE="http://127.0.0.1:$PORT"
PY="$BENCH/peers/.venv/bin/python"
command -v wrk >/dev/null || { echo "wrk is missing: run $BENCH/setup.sh once" >&2; exit 1; }
[ -x "$PY" ] || { echo "the harness venv is missing: run $BENCH/setup.sh once" >&2; exit 1; }
mkdir -p "$OUT"
: > "$OUT/lines.txt"

# wait_up URL: waits up to 15 s for URL to answer 2xx.
wait_up() {
    for _ in $(seq 1 150); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "server at $1 did not come up" >&2
    return 1
}

# start_authd DATABASE_URL: runs the release build on core 0 from a scratch directory, with
# the per-IP limit off (the load comes from one address); sets AUTHD_PID.
start_authd() {
    local dir
    dir=$(mktemp -d)
    taskset -c 0 env -C "$dir" DATABASE_URL="$1" AUTHD_ADDR="127.0.0.1:$PORT" \
        AUTHD_LOGIN_RATE_PER_MIN=0 RUST_LOG=warn "$ROOT/target/release/authd" &
    AUTHD_PID=$!
    wait_up "$BASE/readyz"
}

stop_authd() {
    kill "$AUTHD_PID" 2>/dev/null || true
    wait "$AUTHD_PID" 2>/dev/null || true
}

# refresh_tokens BASE USERS_FILE N FILE: N password logins spread over the users ("name
# password" lines); one refresh token per line of FILE.
refresh_tokens() {
    local base=$1 n=$3 file=$4 users user password
    mapfile -t users < "$2"
    : > "$file"
    for i in $(seq 0 $((n - 1))); do
        read -r user password <<< "${users[$((i % ${#users[@]}))]}"
        # (the body has no final newline: echo one, or sed would not end the line)
        { curl -sf -X POST "$base/token" --data-urlencode "username=$user" \
            --data-urlencode "password=$password"; echo; } \
            | sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p' >> "$file"
    done
}

# refresh_load BASE USERS_FILE: the refresh scenario with wrk and bench/refresh.lua (chained
# tokens, one use each) on core 1, after a warm-up on other chains. Prints one result line.
refresh_load() {
    local base=$1 conns=${C_REFRESH:-16} chains
    chains=$((conns * 4))
    refresh_tokens "$base" "$2" "$chains" "$OUT/refresh.warmup.tokens"
    refresh_tokens "$base" "$2" "$chains" "$OUT/refresh.tokens"
    [ "$(wc -l < "$OUT/refresh.tokens")" -eq "$chains" ] \
        || { echo "could not log in $chains times for the refresh chains" >&2; return 1; }
    REFRESH_TOKENS_FILE="$OUT/refresh.warmup.tokens" BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
        wrk -t1 -c"$conns" -d"${WARMUP:-3}s" -s "$ROOT/bench/refresh.lua" "$base" > /dev/null
    REFRESH_TOKENS_FILE="$OUT/refresh.tokens" BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
        wrk -t1 -c"$conns" -d"${DURATION:-10}s" -s "$ROOT/bench/refresh.lua" "$base" \
        | grep '^WRK_RESULT' | sed "s/^WRK_RESULT/scenario=refresh driver=wrk-chain conns=$conns/"
}

# key_load BASE: the `me` scenario with an API key as the Bearer credential instead of an
# access token (a new user, one key), wrk on core 1 after a warm-up. Prints one result line.
key_load() {
    local base=$1 user="benchkey$RANDOM" password="Bench-pass-12345" access key
    curl -sf -o /dev/null -X POST "$base/users" -H 'Content-Type: application/json' \
        -d "{\"username\": \"$user\", \"password\": \"$password\"}"
    access=$(curl -sf -X POST "$base/token" --data-urlencode "username=$user" \
        --data-urlencode "password=$password" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    key=$(curl -sf -X POST "$base/users/me/api-keys" -H "Authorization: Bearer $access" \
        -H 'Content-Type: application/json' -d '{"name": "bench"}' \
        | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
    [ -n "$key" ] || { echo "could not create an API key for the me-key scenario" >&2; return 1; }
    TOKEN=$key BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
        wrk -t1 -c"${C_ME:-32}" -d"${WARMUP:-3}s" -s "$BENCH/lua/me.lua" "$base" > /dev/null
    TOKEN=$key BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
        wrk -t1 -c"${C_ME:-32}" -d"${DURATION:-10}s" -s "$BENCH/lua/me.lua" "$base" \
        | grep '^WRK_RESULT' | sed "s/^WRK_RESULT/scenario=me-key/"
}
