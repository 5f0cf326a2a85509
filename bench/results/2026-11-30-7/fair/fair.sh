#!/usr/bin/env bash
# usage: AUTHD_BIN=<build reading EXP_NICE/EXP_BATCH> BENCH_DIR=<harness> fair.sh NICE OUTDIR : me, login and mixed scenarios against authd with hashing threads at NICE
set -e
N=$1; OUT=$2
dir=$(mktemp -d)
taskset -c 0 env -C $dir $EXTRA EXP_NICE=$N DATABASE_URL=sqlite://$dir/a.db AUTHD_LOGIN_RATE_PER_MIN=0 RUST_LOG=warn "$AUTHD_BIN" > $dir/log 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:8000/readyz && break; sleep 0.1; done
SERVER_PID=$pid PY=$BENCH_DIR/peers/.venv/bin/python DURATION=8 WARMUP=2 POOL=60 SCENARIOS="me login mixed" $BENCH_DIR/run.sh http://127.0.0.1:8000 $OUT/nice$N 2>&1 | grep "^scenario=" | sed "s/^/nice=$N /" | cut -c1-140
kill $pid; wait $pid 2>/dev/null || true
