#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on 127.0.0.1 and print its URL (nothing else on stdout):
#   export TEST_DATABASE_URL=$(bash tests/db/start_postgres.sh)
#   bash tests/db/start_postgres.sh --stop      # stop it and delete its files
#   bash tests/db/start_postgres.sh --run CMD... # a private cluster (own directory, a free port)
#                                                # for CMD, with TEST_DATABASE_URL exported;
#                                                # stopped and deleted when CMD ends
# Trust auth on loopback only, fsync off: for tests, never for data you want to keep.
# Settings: PG_TEST_PORT (5433), PG_TEST_DIR (/tmp/arena-test-postgres), PG_BIN (newest installed).
set -euo pipefail
if [ "${1:-}" = "--run" ]; then
  shift
  [ $# -gt 0 ] || { echo "start_postgres.sh --run: name the command to run" >&2; exit 2; }
  PG_TEST_DIR=$(mktemp -d /tmp/arena-test-postgres-XXXXXX)
  PG_TEST_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export PG_TEST_DIR PG_TEST_PORT
  self=$(readlink -f "$0")
  trap 'bash "$self" --stop >/dev/null 2>&1 || true' EXIT
  TEST_DATABASE_URL=$(bash "$self")
  export TEST_DATABASE_URL
  "$@"  # not exec: the trap stops the cluster afterwards
  exit $?
fi
PORT=${PG_TEST_PORT:-5433}
DIR=${PG_TEST_DIR:-/tmp/arena-test-postgres}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
USER_NAME=arena
URL="postgresql://${USER_NAME}@127.0.0.1:${PORT}/postgres"

if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  echo "start_postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin;" \
       "install them (apt-get install postgresql) or set PG_BIN" >&2
  exit 1
fi

# initdb and postgres refuse to run as root: run them as the 'postgres' system user (or nobody).
as_owner() { "$@"; }
if [ "$(id -u)" -eq 0 ]; then
  OWNER=$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)
  as_owner() { runuser -u "$OWNER" -- "$@"; }
fi

if [ "${1:-}" = "--stop" ]; then
  if [ -f "$DIR/data/PG_VERSION" ]; then
    as_owner "$PG_BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
  exit 0
fi

if [ -f "$DIR/data/PG_VERSION" ] && as_owner "$PG_BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
  echo "$URL"
  exit 0
fi

rm -rf "$DIR"
mkdir -p "$DIR"
[ "$(id -u)" -eq 0 ] && chown "$OWNER" "$DIR"
as_owner "$PG_BIN/initdb" -D "$DIR/data" -U "$USER_NAME" --auth=trust --encoding=UTF8 \
  --no-locale >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; exit 1; }
as_owner "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null || { cat "$DIR/server.log" >&2; exit 1; }
echo "$URL"
