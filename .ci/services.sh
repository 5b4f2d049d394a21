#!/usr/bin/env bash
# Installs and starts the real services the tests use: PostgreSQL and redis-server.
# Sourced by .ci/run; exports CALLCENTER_TEST_POSTGRES_URL and CALLCENTER_TEST_REDIS_URL.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
as_postgres() { if [ -z "$SUDO" ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    postgresql redis-server make python3-venv >/dev/null

# redis-server on its own port so a system instance, if any, is left alone.
REDIS_PORT=6391
redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --logfile /tmp/callcenter-ci-redis.log
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
export CALLCENTER_TEST_REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"

# PostgreSQL: Debian's cluster, whatever its version, started and given a test role.
PG_VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^${PG_VERSION} main$"; then
    $SUDO pg_createcluster "$PG_VERSION" main >/dev/null
fi
$SUDO pg_ctlcluster "$PG_VERSION" main start 2>/dev/null || true
PG_PORT=$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $3}')
for _ in $(seq 100); do pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.1; done
as_postgres psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'callcenter_test') THEN
    CREATE ROLE callcenter_test LOGIN PASSWORD 'callcenter_test' CREATEDB;
  END IF;
END \$\$;
SQL
as_postgres psql -q -p "$PG_PORT" -tc \
    "SELECT 1 FROM pg_database WHERE datname = 'callcenter_test'" | grep -q 1 \
    || as_postgres createdb -p "$PG_PORT" -O callcenter_test callcenter_test
export CALLCENTER_TEST_POSTGRES_URL="postgresql+psycopg://callcenter_test:callcenter_test@127.0.0.1:${PG_PORT}/callcenter_test"
