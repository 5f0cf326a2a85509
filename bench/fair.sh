#!/usr/bin/env bash
# Interleaved before/after for fairness under the login flood: each binary in turn, ROUNDS
# times, on a new database each time, runs the harness's `me`, `login` and `mixed`
# scenarios (one harness call, one user pool) and prints the share of each solo rate kept
# under the flood. The issue's line is both shares ≥ 50 % with `/users/me` p99 ≤ 10 ms.
#
#   usage: bench/fair.sh LABEL=BINARY [LABEL=BINARY ...]
#   env:   ROUNDS (3), BACKEND (postgres | sqlite), BENCH_PG (admin URL, as bench/run.sh),
#          SCENARIOS (default "me login mixed"; "me login register mixed" as in bench/run.sh),
#          SEPARATE (1: one harness call per scenario, each with its own user pool, as
#          bench/run.sh does; default 0, one call for all),
#          BENCH_DIR (../shared/bench), OUT (a folder for the raw lines; default a temp one),
#          plus the harness's knobs (DURATION 8, WARMUP 2, POOL 100, ...)
set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$(cd "${BENCH_DIR:-$ROOT/../shared/bench}" && pwd)
ROUNDS=${ROUNDS:-3}
BACKEND=${BACKEND:-postgres}
BENCH_PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
OUT=${OUT:-$(mktemp -d)}
export DURATION=${DURATION:-8} WARMUP=${WARMUP:-2} POOL=${POOL:-100}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# field LINE NAME: the value of NAME=... in a harness line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<< " $1"; }

# one LABEL BINARY ROUND: a fresh database and server, the three scenarios, one summary line.
one() {
    local label=$1 binary=$2 round=$3 dir url db="" pid lines me login mme mlogin
    dir=$(mktemp -d)
    if [ "$BACKEND" = postgres ]; then
        db="authd_fair_$(date +%s)_$RANDOM"
        psql "$BENCH_PG" -qc "CREATE DATABASE $db"
        url="${BENCH_PG%/*}/$db"
    else
        url="sqlite://$dir/authd.db"
    fi
    taskset -c 0 env -C "$dir" DATABASE_URL="$url" AUTHD_ADDR="127.0.0.1:$PORT" \
        AUTHD_LOGIN_RATE_PER_MIN=0 RUST_LOG=warn "$binary" &
    pid=$!
    wait_up "$BASE/readyz"
    if [ "${SEPARATE:-0}" = 1 ]; then # as bench/run.sh: one harness call, one user pool, each
        lines=$(for s in ${SCENARIOS:-me login mixed}; do
            SERVER_PID=$pid PY="$PY" SCENARIOS="$s" "$BENCH/run.sh" "$BASE" "$OUT/$label-$round-$s" 2>&1
        done | grep '^scenario=')
    else
        lines=$(SERVER_PID=$pid PY="$PY" SCENARIOS="${SCENARIOS:-me login mixed}" "$BENCH/run.sh" \
            "$BASE" "$OUT/$label-$round" 2>&1 | grep '^scenario=')
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    [ -z "$db" ] || psql "$BENCH_PG" -qc "DROP DATABASE $db WITH (FORCE)"
    rm -rf "$dir"
    sed "s/^/label=$label round=$round /" <<< "$lines" >> "$OUT/lines.txt"
    me=$(field "$(grep '^scenario=me ' <<< "$lines")" rps)
    login=$(field "$(grep '^scenario=login ' <<< "$lines")" rps)
    mme=$(grep '^scenario=mixed_me ' <<< "$lines")
    mlogin=$(field "$(grep '^scenario=mixed_login ' <<< "$lines")" rps)
    awk -v l="$label" -v r="$round" -v me="$me" -v login="$login" -v mme="$(field "$mme" rps)" \
        -v p99="$(field "$mme" p99_ms)" -v ml="$mlogin" 'BEGIN {
        printf "label=%s round=%s me=%.0f login=%.1f mixed_me=%.0f (%.0f %%, p99 %s ms) mixed_login=%.1f (%.0f %%)\n",
            l, r, me, login, mme, 100 * mme / me, p99, ml, 100 * ml / login }'
}

for round in $(seq 1 "$ROUNDS"); do
    for pair in "$@"; do
        one "${pair%%=*}" "${pair#*=}" "$round"
    done
done
echo "raw lines: $OUT/lines.txt"
