#!/usr/bin/env bash
# usage: BENCH_DIR=<harness> pg-me-key.sh BINARY LABEL : /users/me with a token and with an API key on a scratch PG db
set -e
BIN=$1; LABEL=$2
db="authd_pgkey_$RANDOM"
psql postgres://postgres@127.0.0.1:5432/test -qc "CREATE DATABASE $db"
dir=$(mktemp -d)
taskset -c 0 env -C $dir DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db AUTHD_LOGIN_RATE_PER_MIN=0 RUST_LOG=warn $BIN > $dir/log 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:8000/readyz && break; sleep 0.1; done
curl -sf -o /dev/null -X POST http://127.0.0.1:8000/users -H 'Content-Type: application/json' -d '{"username":"loadtest","password":"Bench-pass-12345"}'
access=$(curl -sf -X POST http://127.0.0.1:8000/token -d username=loadtest --data-urlencode password=Bench-pass-12345 | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
key=$(curl -sf -X POST http://127.0.0.1:8000/users/me/api-keys -H "Authorization: Bearer $access" -H 'Content-Type: application/json' -d '{"name":"b"}' | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
for what in token key; do
  if [ $what = token ]; then t=$access; else t=$key; fi
  TOKEN=$t BENCH_LUA_DIR=$BENCH_DIR/lua taskset -c 1 wrk -t1 -c32 -d2s -s $BENCH_DIR/lua/me.lua http://127.0.0.1:8000 >/dev/null
  TOKEN=$t BENCH_LUA_DIR=$BENCH_DIR/lua taskset -c 1 wrk -t1 -c32 -d6s -s $BENCH_DIR/lua/me.lua http://127.0.0.1:8000 | grep WRK_RESULT | sed "s/^WRK_RESULT/label=$LABEL credential=$what/"
done
kill $pid; wait $pid 2>/dev/null || true
psql postgres://postgres@127.0.0.1:5432/test -qc "DROP DATABASE $db WITH (FORCE)"
