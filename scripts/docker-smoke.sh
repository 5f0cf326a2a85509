#!/usr/bin/env bash
# Builds the Docker image and checks what a user of it relies on: the container reports
# healthy; register, login and /users/me answer through the published port; it runs as a
# non-root user; its SQLite file and the -wal/-shm files are mode 0600; the data survives
# `docker restart`; with DATABASE_URL=postgres://... it serves from PostgreSQL; a bad setting
# makes it exit with one line naming the setting. Prints the image size and the build time;
# exits non-zero on the first failure.
#
# usage: scripts/docker-smoke.sh
#   IMAGE=authd:smoke        the tag to build
#   PG_URL=postgres://postgres@127.0.0.1:5432   a PostgreSQL server the host network reaches
#                            (a database is created for the run and dropped after it)
#   PORT=18080               the host port the checks talk to
#
# Where Docker has no bridge network (an engine started with --bridge=none), the containers
# share the host's network and listen on PORT themselves; otherwise PORT is published (-p).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-authd:smoke}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PORT=${PORT:-18080}
RUN_ID="authd-smoke-$$"
PG_DB="authd_smoke_$$"
BASE="http://127.0.0.1:${PORT}"
PASSWORD="correct horse battery staple"

step() { printf '== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

containers=()
cleanup() {
    for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
    docker volume rm -f "${RUN_ID}-data" >/dev/null 2>&1 || true
    psql "${PG_URL}/postgres" -qAtc "DROP DATABASE IF EXISTS ${PG_DB}" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if docker network inspect bridge >/dev/null 2>&1; then
    net_args() { echo "-p 127.0.0.1:${PORT}:8000"; }
    NET="bridge, port ${PORT} published"
else
    net_args() { echo "--network host -e AUTHD_ADDR=127.0.0.1:${PORT}"; }
    NET="host network (no bridge on this engine), listening on ${PORT}"
fi

# Waits until the container's own HEALTHCHECK reports healthy (it runs every 30 s).
wait_healthy() {
    local c=$1 status
    for _ in $(seq 1 90); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null || echo gone)
        case $status in
            healthy) return 0 ;;
            unhealthy | gone) docker logs "$c" >&2 || true; fail "$c is $status" ;;
        esac
        sleep 1
    done
    docker logs "$c" >&2 || true
    fail "$c did not report healthy within 90 s (last: $status)"
}

wait_listening() {
    for _ in $(seq 1 60); do
        curl -sf -o /dev/null "${BASE}/healthz" && return 0
        sleep 0.5
    done
    fail "nothing answers ${BASE}/healthz"
}

# expect STATUS CURL-ARGS...: runs curl, fails unless the status matches; the body goes to $BODY.
expect() {
    local want=$1; shift
    local out status
    out=$(curl -s -w '\n%{http_code}' "$@") || fail "curl $* did not complete"
    status=${out##*$'\n'}
    BODY=${out%$'\n'*}
    [ "$status" = "$want" ] || fail "curl $*: status $status, expected $want; body: $BODY"
}

json_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$BODY" "$1"; }

register_login_me() {
    local user=$1
    expect 201 -X POST "${BASE}/users/" -H 'Content-Type: application/json' \
        -d "{\"username\": \"${user}\", \"password\": \"${PASSWORD}\"}"
    login_me "$user"
}

login_me() {
    local user=$1
    expect 200 -X POST "${BASE}/token" -d "username=${user}" --data-urlencode "password=${PASSWORD}"
    local access
    access=$(json_field access_token)
    expect 200 "${BASE}/users/me/" -H "Authorization: Bearer ${access}"
    [ "$(json_field username)" = "$user" ] || fail "/users/me named $(json_field username), not $user"
}

step "docker build -t ${IMAGE} ."
started=$(date +%s)
docker build --network=host -t "$IMAGE" . >"/tmp/${RUN_ID}-build.log" 2>&1 \
    || { tail -40 "/tmp/${RUN_ID}-build.log" >&2; fail "the image did not build (log: /tmp/${RUN_ID}-build.log)"; }
build_secs=$(($(date +%s) - started))
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")

step "SQLite in a volume (${NET})"
c="${RUN_ID}-sqlite"
containers+=("$c")
# shellcheck disable=SC2046
docker run -d --name "$c" $(net_args) -v "${RUN_ID}-data:/var/lib/authd" "$IMAGE" >/dev/null
wait_healthy "$c"
echo "healthy"
wait_listening
register_login_me smokeuser
echo "register, login and /users/me answer"

uid=$(docker exec "$c" id -u)
[ "$uid" != 0 ] || fail "the container runs as root"
echo "runs as uid ${uid} ($(docker exec "$c" id -un))"

modes=$(docker exec "$c" sh -c 'cd /var/lib/authd && stat -c "%a %n" authd.db authd.db-wal authd.db-shm') \
    || fail "the SQLite file, -wal or -shm is missing"
echo "$modes" | sed 's/^/  /'
if echo "$modes" | grep -qv '^600 '; then fail "a database file is not mode 0600"; fi

step "docker restart keeps the data"
docker restart "$c" >/dev/null
wait_listening
login_me smokeuser
echo "smokeuser logs in after the restart"
docker rm -f "$c" >/dev/null

step "PostgreSQL (host network)"
psql "${PG_URL}/postgres" -qAtc "CREATE DATABASE ${PG_DB}" >/dev/null \
    || fail "cannot create a database on ${PG_URL}"
c="${RUN_ID}-pg"
containers+=("$c")
docker run -d --name "$c" --network host -e AUTHD_ADDR="127.0.0.1:${PORT}" \
    -e DATABASE_URL="${PG_URL}/${PG_DB}" "$IMAGE" >/dev/null
wait_listening
register_login_me pguser
stored=$(psql "${PG_URL}/${PG_DB}" -qAtc "SELECT username FROM users WHERE username = 'pguser'")
[ "$stored" = pguser ] || fail "the user registered through the container is not in PostgreSQL"
echo "pguser is a row of ${PG_DB}.users"
docker rm -f "$c" >/dev/null

step "a bad setting stops the container"
set +e
err=$(docker run --rm --network none -e AUTHD_ACCESS_TTL_SECS=soon "$IMAGE" 2>&1 >/dev/null)
code=$?
set -e
[ "$code" != 0 ] || fail "the container exited 0 with AUTHD_ACCESS_TTL_SECS=soon"
[ "$(printf '%s\n' "$err" | grep -c .)" = 1 ] || fail "expected one line, got: $err"
printf '%s\n' "$err" | grep -q AUTHD_ACCESS_TTL_SECS || fail "the line does not name the setting: $err"
echo "exit ${code}: ${err}"

step "passed"
printf 'image %s: %d MB; built in %d s\n' "$IMAGE" $((size / 1000000)) "$build_secs"
