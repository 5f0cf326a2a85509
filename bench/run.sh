#!/usr/bin/env bash
# One command for authd's benchmark: builds authd in release, runs it pinned to core 0 on
# SQLite and then on PostgreSQL, drives the black-box harness in ../shared/bench (wrk on
# core 1) over the same scenarios, measures the physical limits in the same run (axum
# hello-world ceiling, argon2id verify time) and, when its venv has FastAPI, the tutorial app;
# then prints each figure as a ratio of its limit and draws them (plot.svg, bench/plot).
# The refresh figures come from wrk with bench/refresh.lua (chained tokens), not the harness's
# Python client, which tops out near 10k req/s.
#
#   usage: bench/run.sh [OUTDIR]              (default: target/bench/<UTC time>)
#   env:   BENCH_DIR   the harness (default ../shared/bench; run its setup.sh once)
#          BENCH_PG    admin URL of a PostgreSQL where a scratch database may be created
#                      (default postgres://postgres@127.0.0.1:5432/test; empty skips Postgres)
#          SCENARIOS   scenarios (default "me me-key login register refresh mixed"; me-key:
#                      GET /users/me with an API key instead of an access token)
#          plus the harness's own knobs (DURATION, WARMUP, POOL, C_ME, ...)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$(cd "${BENCH_DIR:-$ROOT/../shared/bench}" && pwd)
OUT=${1:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
BENCH_PG=${BENCH_PG-postgres://postgres@127.0.0.1:5432/test}
export SCENARIOS=${SCENARIOS:-"me me-key login register refresh mixed"}
# The harness runs every scenario but refresh, which has its own driver (bench/refresh.lua),
# and me-key, which needs an API key (key_load in bench/lib.sh).
HARNESS_SCENARIOS=$(for s in $SCENARIOS; do
    [ "$s" = refresh ] || [ "$s" = me-key ] || printf '%s ' "$s"
done)

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

echo "== building authd and the limits (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
LIMITS_TARGET="$ROOT/target/bench-limits"
CARGO_TARGET_DIR="$LIMITS_TARGET" cargo build --release --quiet --manifest-path "$BENCH/limits/Cargo.toml"
cargo build --release --quiet --manifest-path "$ROOT/bench/plot/Cargo.toml" \
    --target-dir "$ROOT/target/bench-plot"

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# harness NAME URL PID [VAR=value...]: one harness run, its lines prefixed with NAME.
harness() {
    local name=$1 url=$2 pid=$3
    shift 3
    env SERVER_PID="$pid" PY="$PY" "$@" "$BENCH/run.sh" "$url" "$OUT/$name" 2>&1 \
        | grep '^scenario=' | sed "s/^/server=$name /" | tee -a "$OUT/lines.txt"
}

# argon2 AROUND: the argon2id limits, labelled with the scenarios they sit between.
argon2() {
    taskset -c 0 "$LIMITS_TARGET/release/crypto" | sed "s|^|around=$1 |" | tee -a "$OUT/crypto.txt"
}

# harness_bracketed NAME URL PID: the harness scenarios, one harness run each, with the
# argon2id limit measured right before and right after each hashing scenario (login,
# register), and the hello-world ceiling right before and after `me`: this VM's speed drifts
# by up to 1.3x over minutes, so a limit taken minutes away says little about the seconds in
# which the scenario ran. ratios.py divides each by the better of its two neighbours.
harness_bracketed() {
    local name=$1 url=$2 pid=$3 s
    for s in $HARNESS_SCENARIOS; do
        case $s in
            login | register)
                argon2 "$name/$s"
                harness "$name" "$url" "$pid" SCENARIOS="$s"
                argon2 "$name/$s"
                ;;
            me)
                hello_ceiling "before@$name/me"
                harness "$name" "$url" "$pid" SCENARIOS="$s"
                hello_ceiling "after@$name/me"
                ;;
            *) harness "$name" "$url" "$pid" SCENARIOS="$s" ;;
        esac
    done
}

echo "== limits: argon2id verify time, axum hello-world ceiling"
: > "$OUT/crypto.txt"
argon2 start
# hello_ceiling LABEL: the axum hello-world server under the `me` scenario's wrk settings,
# with a token-sized Bearer value (the server ignores it); its line is `server=hello-LABEL`.
# Measured at the start and the end of the run, and right before and after each `me`
# scenario; a ratio uses the higher of the figures around its scenario, since a busy
# neighbour on this VM only ever lowers it.
hello_ceiling() {
    taskset -c 0 "$LIMITS_TARGET/release/hello" "127.0.0.1:8099" 2>/dev/null &
    PIDS+=($!)
    wait_up "http://127.0.0.1:8099/users/me"
    TOKEN=$(printf 'x%.0s' $(seq 235)) BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
        wrk -t1 -c"${C_ME:-32}" -d"${WARMUP:-3}s" -s "$BENCH/lua/me.lua" http://127.0.0.1:8099 >/dev/null
    TOKEN=$(printf 'x%.0s' $(seq 235)) BENCH_LUA_DIR="$BENCH/lua" taskset -c 1 \
        wrk -t1 -c"${C_ME:-32}" -d"${DURATION:-10}s" -s "$BENCH/lua/me.lua" http://127.0.0.1:8099 \
        | grep WRK_RESULT | sed "s|^WRK_RESULT|server=hello-$1 scenario=me|" | tee -a "$OUT/lines.txt"
    kill "${PIDS[-1]}"
}
hello_ceiling start

run_authd() {
    local name=$1 url=$2 base="http://127.0.0.1:$PORT"
    echo "== authd on $name"
    start_authd "$url"
    PIDS+=("$AUTHD_PID")
    if [ -n "$HARNESS_SCENARIOS" ]; then
        harness_bracketed "authd-$name" "$base" "$AUTHD_PID"
    else # only refresh: the harness's user pool, without its scenarios
        mkdir -p "$OUT/authd-$name"
        "$PY" "$BENCH/client.py" setup "$base" "r$RANDOM" "${POOL:-200}" \
            "$OUT/authd-$name/users.txt" "$OUT/authd-$name/token.txt"
    fi
    if [[ " $SCENARIOS " == *" me-key "* ]]; then
        hello_ceiling "before@authd-$name/me-key"
        key_load "$base" | sed "s/^/server=authd-$name /" | tee -a "$OUT/lines.txt"
        hello_ceiling "after@authd-$name/me-key"
    fi
    if [[ " $SCENARIOS " == *" refresh "* ]]; then
        refresh_load "$base" "$OUT/authd-$name/users.txt" | sed "s/^/server=authd-$name /" \
            | tee -a "$OUT/lines.txt"
    fi
    stop_authd
}

run_authd sqlite "sqlite://$(mktemp -d)/authd.db"

if [ -n "$BENCH_PG" ]; then
    db="authd_bench_$(date +%s)"
    psql "$BENCH_PG" -qc "CREATE DATABASE $db"
    pg_url="${BENCH_PG%/*}/$db"
    run_authd postgres "$pg_url"
    psql "$BENCH_PG" -qc "DROP DATABASE $db WITH (FORCE)"
fi

if [ -n "$HARNESS_SCENARIOS" ] && "$PY" -c 'import fastapi, passlib, jose' 2>/dev/null; then
    echo "== the tutorial app (argon2id, same cost)"
    pid=$(PY="$PY" "$BENCH/peers/start_fastapi.sh" main_argon2 8001)
    PIDS+=("$pid")
    wait_up "http://127.0.0.1:8001/docs"
    harness_bracketed tutorial "http://127.0.0.1:8001" "$pid"
    kill "$pid"
else
    echo "== the tutorial app: skipped (its venv has no FastAPI; see $BENCH/setup.sh)"
fi

echo "== limits again: axum hello-world ceiling, argon2id verify time"
hello_ceiling end
argon2 end

echo "== ratios"
"$PY" "$ROOT/bench/ratios.py" "$OUT/lines.txt" "$OUT/crypto.txt" | tee "$OUT/ratios.md"
"$ROOT/target/bench-plot/release/authd-bench-plot" "$OUT/lines.txt" "$OUT/plot.svg"
echo "raw output: $OUT"
