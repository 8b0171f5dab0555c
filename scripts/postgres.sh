#!/usr/bin/env bash
# Runs a private PostgreSQL in the foreground for the end-to-end tests and the
# bench: a new cluster in a temporary directory, on loopback port PORT, its one
# user `hearth` trusted, removed when it stops. As the `postgres` user when run as
# root (PostgreSQL refuses to run as root).
#   scripts/postgres.sh PORT [postgres options...]
# Its address: postgres://hearth@127.0.0.1:PORT/postgres
set -euo pipefail
port=$1; shift
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
dir="$(mktemp -d /tmp/hearth-postgres.XXXXXX)"
as_postgres=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$dir"
  as_postgres=(runuser -u postgres --)
fi
trap 'rm -rf "$dir"' EXIT
"${as_postgres[@]}" "$bin/initdb" -D "$dir/data" -A trust -U hearth -E UTF8 --no-sync >/dev/null
# Not exec: the trap removes the directory once the server stops.
"${as_postgres[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -k "$dir" \
  -c listen_addresses=127.0.0.1 "$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
wait "$pid"
