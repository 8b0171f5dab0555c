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
# A run killed outright (Playwright stops its servers with SIGKILL) leaves its
# directory behind: those an hour old whose server is gone are removed.
for old in $(find /tmp -maxdepth 1 -name 'hearth-postgres.*' -mmin +60 2>/dev/null); do
  pid="$(head -1 "$old/data/postmaster.pid" 2>/dev/null || true)"
  if [ -z "$pid" ] || [ ! -d "/proc/$pid" ]; then rm -rf "$old"; fi
done
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
# runuser passes no signal on: the server is stopped by pg_ctl.
stop_server() {
  "${as_postgres[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap stop_server EXIT INT TERM
wait "$pid"
