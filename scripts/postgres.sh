#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests on a free loopback port and print its URL.
# The data folder lives under var/pg in this checkout; the server runs as the postgres user.
# When that user cannot reach the checkout (a clone inside a private folder, e.g. mktemp -d),
# the folder is /tmp/scanpay-pg-<hash of the checkout's path> instead.
# Running it again while that server is up prints the same URL; `--root` prints the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
root=$(pwd)/var/pg
mkdir -p "$root"
chown postgres "$root" 2>/dev/null || true
if ! as_pg test -w "$root"; then
    root=/tmp/scanpay-pg-$(pwd | sha1sum | cut -c1-12)
    mkdir -p "$root"
    chmod 755 "$root"
    chown postgres "$root" 2>/dev/null || true
fi
if [ "${1:-}" = "--root" ]; then
    echo "$root"
    exit 0
fi
data=$root/data
if [ ! -f "$data/PG_VERSION" ]; then
    as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    # A free port, preferring SCANPAY_PG_PORT (55432 by default).
    port=$(python3 - "${SCANPAY_PG_PORT:-55432}" <<'PY'
import socket, sys
start = int(sys.argv[1])
for port in [start, *range(start + 1, start + 200)]:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
PY
)
    echo "$port" > "$root/port"
    as_pg "$bindir/pg_ctl" -D "$data" -l "$root/server.log" -w \
        -o "-p $port -k $root -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$(cat "$root/port")/postgres"
