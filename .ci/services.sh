#!/usr/bin/env bash
# Installs the real services the tests use (PostgreSQL and redis-server), Debian's Chromium
# for the page tests (Playwright drives it; no browser is downloaded), and defines two
# functions for .ci/run:
#   ci_services_start  starts a private redis-server and a private PostgreSQL cluster, each
#                      in its own fresh temporary directory on a free port, and exports
#                      CALLCENTER_TEST_REDIS_URL, CALLCENTER_TEST_POSTGRES_URL and
#                      CALLCENTER_TEST_REDIS_SERVER (the binary, for tests that start their own);
#   ci_services_stop   stops exactly those two processes (by pidfile / data directory) and
#                      removes their directories; safe to call at any point, and twice.
# Nothing else is stopped or changed: a system redis or the Debian cluster `main` is never
# touched, and the database is new for each run, so its schema is ours to drop.
# Each service must come up within ~10 s, else its log is printed and the shell exits 1.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends \
    postgresql redis-server make python3-venv chromium fonts-dejavu-core >/dev/null

CI_REDIS_DIR="" CI_REDIS_PORT="" CI_PG_DIR="" CI_PG_BIN=""

ci_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# PostgreSQL refuses to run as root: as root, its commands run as the postgres OS user.
ci_as_postgres() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

ci_fail() {  # ci_fail MESSAGE LOGFILE: print the service's log and exit (the trap cleans up)
    echo "services: $1; its log ($2):" >&2
    cat "$2" >&2 2>/dev/null || true
    exit 1
}

ci_redis_start() {
    CI_REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/callcenter-ci-redis.XXXXXX")
    CI_REDIS_PORT=$(ci_free_port)
    redis-server --port "$CI_REDIS_PORT" --bind 127.0.0.1 --dir "$CI_REDIS_DIR" \
        --pidfile "$CI_REDIS_DIR/redis.pid" --logfile "$CI_REDIS_DIR/redis.log" \
        --save '' --appendonly no --daemonize yes \
        || ci_fail "redis-server did not start" "$CI_REDIS_DIR/redis.log"
    local deadline=$((SECONDS + 10))
    until [ "$(timeout 1 redis-cli -p "$CI_REDIS_PORT" ping 2>/dev/null)" = PONG ]; do
        [ "$SECONDS" -lt "$deadline" ] || ci_fail \
            "redis-server not answering on port $CI_REDIS_PORT after 10 s" "$CI_REDIS_DIR/redis.log"
        sleep 0.1
    done
    export CALLCENTER_TEST_REDIS_URL="redis://127.0.0.1:${CI_REDIS_PORT}/0"
    CALLCENTER_TEST_REDIS_SERVER=$(command -v redis-server)
    export CALLCENTER_TEST_REDIS_SERVER
}

ci_postgres_start() {
    local version port password database
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    CI_PG_BIN="/usr/lib/postgresql/$version/bin"
    CI_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/callcenter-ci-pg.XXXXXX")
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$CI_PG_DIR"; fi
    local log="$CI_PG_DIR/postgres.log"
    ci_as_postgres "$CI_PG_BIN/initdb" -D "$CI_PG_DIR/data" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$CI_PG_DIR/initdb.log" 2>&1 \
        || ci_fail "initdb failed" "$CI_PG_DIR/initdb.log"
    port=$(ci_free_port)
    # The socket lives in our own directory; TCP only on 127.0.0.1; fsync off: throwaway data.
    ci_as_postgres "$CI_PG_BIN/pg_ctl" start -D "$CI_PG_DIR/data" -l "$log" -w -t 10 \
        -o "-p $port -k $CI_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null \
        || ci_fail "PostgreSQL did not come up on port $port within 10 s" "$log"
    password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
    database="callcenter_test_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
    ci_as_postgres "$CI_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$CI_PG_DIR" -p "$port" \
        -U postgres -d postgres >/dev/null <<SQL || ci_fail "creating the test role failed" "$log"
CREATE ROLE callcenter_test LOGIN PASSWORD '$password' CREATEDB;
CREATE DATABASE $database OWNER callcenter_test;
SQL
    export CALLCENTER_TEST_POSTGRES_URL="postgresql+psycopg://callcenter_test:${password}@127.0.0.1:${port}/${database}"
}

ci_services_start() {
    ci_redis_start
    ci_postgres_start
}

ci_services_stop() {
    local pid
    if [ -n "$CI_REDIS_DIR" ]; then
        pid=$(cat "$CI_REDIS_DIR/redis.pid" 2>/dev/null || true)
        # Only while the process of our pidfile lives: then the port is still ours.
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            timeout 5 redis-cli -p "$CI_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
        fi
        rm -rf "$CI_REDIS_DIR"
        CI_REDIS_DIR=""
    fi
    if [ -n "$CI_PG_DIR" ]; then
        if [ -f "$CI_PG_DIR/data/postmaster.pid" ]; then
            ci_as_postgres "$CI_PG_BIN/pg_ctl" stop -D "$CI_PG_DIR/data" -m fast -w -t 30 \
                >/dev/null 2>&1 || true
        fi
        rm -rf "$CI_PG_DIR"
        CI_PG_DIR=""
    fi
}
