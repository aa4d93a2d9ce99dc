#!/usr/bin/env bash
# Start/stop a private PostgreSQL cluster for tests; exports DESKWARDEN_TEST_PG. Sourced by scripts/test.sh.
start_test_postgres() {
  if [ -n "${DESKWARDEN_TEST_PG:-}" ]; then return 0; fi
  local bin; bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$bin" ]; then echo "setup: PostgreSQL not installed; postgres tests will be skipped" >&2; return 0; fi
  PG_DIR="$(mktemp -d /tmp/deskwarden-pg.XXXXXX)"
  PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  local run=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; run=(runuser -u postgres --); fi
  "${run[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  "${run[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200" start >/dev/null
  export DESKWARDEN_TEST_PG="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres"
  PG_BIN="$bin"
  echo "setup: PostgreSQL test server on port $PG_PORT" >&2
}

stop_test_postgres() {
  if [ -n "${PG_DIR:-}" ]; then
    local run=(); [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
