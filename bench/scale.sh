#!/usr/bin/env bash
# How authd's hot paths grow with the data: GET /users/me and refresh with 1k, 100k and 1M
# users already in the database (each with one live session and its refresh token), seeded
# directly in SQL rather than through argon2, on SQLite and then on PostgreSQL.
#
#   usage: bench/scale.sh [OUTDIR]             (default: target/bench/scale-<UTC time>)
#   env:   SIZES      user counts (default "1000 100000 1000000")
#          BENCH_DIR, BENCH_PG, DURATION, WARMUP, POOL: as for bench/run.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$(cd "${BENCH_DIR:-$ROOT/../shared/bench}" && pwd)
OUT=${1:-$ROOT/target/bench/scale-$(date -u +%Y%m%dT%H%M%SZ)}
BENCH_PG=${BENCH_PG-postgres://postgres@127.0.0.1:5432/test}
SIZES=${SIZES:-"1000 100000 1000000"}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
trap stop_authd EXIT

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"

# Seed SQL for each backend: N users copying one real argon2 hash, each with one session,
# whose insert trigger records its refresh token.
seed_sqlite() { # FILE N
    python3 - "$1" "$2" <<'PYEOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = int(sys.argv[2])
now = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"
later = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '+7 days')"
db.executescript(f"""
BEGIN;
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})
INSERT INTO users (id, username, username_normalized, email, email_normalized, password_hash, created_at)
SELECT randomblob(16), 'seed' || i, 'seed' || i, 'seed' || i || '@example.com', 'seed' || i || '@example.com',
       (SELECT password_hash FROM users LIMIT 1), {now} FROM seq;
INSERT INTO sessions (id, user_id, generation, token_hash, created_at, last_used_at, rotated_at, idle_expires_at, expires_at)
SELECT randomblob(16), id, 0, randomblob(32), {now}, {now}, {now}, {later}, {later}
FROM users WHERE username_normalized LIKE 'seed%';
COMMIT;
ANALYZE;
""")
PYEOF
}

seed_postgres() { # URL N
    psql "$1" -q -v ON_ERROR_STOP=1 <<EOSQL
INSERT INTO users (id, username, username_normalized, email, email_normalized, password_hash, created_at)
SELECT gen_random_uuid(), 'seed' || i, 'seed' || i, 'seed' || i || '@example.com', 'seed' || i || '@example.com',
       (SELECT password_hash FROM users LIMIT 1), now() FROM generate_series(1, $2) AS i;
INSERT INTO sessions (id, user_id, generation, token_hash, created_at, last_used_at, rotated_at, idle_expires_at, expires_at)
SELECT gen_random_uuid(), id, 0, sha256(id::text::bytea), now(), now(), now(), now() + interval '7 days', now() + interval '7 days'
FROM users WHERE username_normalized LIKE 'seed%';
ANALYZE;
EOSQL
}

# measure NAME URL SEED_COMMAND...: migrate and create one account (for its hash), seed, then
# run the me scenario (harness, wrk) and the refresh scenario (bench/refresh.lua).
measure() {
    local name=$1 url=$2
    shift 2
    echo "== $name"
    start_authd "$url"
    curl -sf -o /dev/null -X POST "$BASE/users/" -H 'Content-Type: application/json' \
        -d '{"username":"template","password":"violet-harbour-quietly-48"}' \
        || { echo "could not create the template account" >&2; return 1; }
    stop_authd
    local t0=$SECONDS
    "$@"
    echo "seeded in $((SECONDS - t0)) s"
    start_authd "$url"
    env SERVER_PID="$AUTHD_PID" PY="$PY" SCENARIOS=me "$BENCH/run.sh" "$BASE" "$OUT/$name" 2>&1 \
        | grep '^scenario=' | sed "s/^/server=$name /" | tee -a "$OUT/lines.txt"
    refresh_load "$BASE" "$OUT/$name/users.txt" | sed "s/^/server=$name /" | tee -a "$OUT/lines.txt"
    stop_authd
}

for n in $SIZES; do
    dir=$(mktemp -d)
    measure "sqlite-$n" "sqlite://$dir/authd.db" seed_sqlite "$dir/authd.db" "$n"
    rm -rf "$dir"
done
if [ -n "$BENCH_PG" ]; then
    for n in $SIZES; do
        db="authd_scale_$(date +%s)"
        psql "$BENCH_PG" -qc "CREATE DATABASE $db"
        measure "postgres-$n" "${BENCH_PG%/*}/$db" seed_postgres "${BENCH_PG%/*}/$db" "$n"
        psql "$BENCH_PG" -qc "DROP DATABASE $db WITH (FORCE)"
    done
fi
echo "results: $OUT/lines.txt"
