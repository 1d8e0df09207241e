#!/usr/bin/env bash
# Several scanpay instances on one machine, to try it out (the tests and benchmarks build the
# same set-up from Python: tests/web/cluster_kit.py, benchmarks/bench_cluster.py):
# PostgreSQL (scripts/postgres.sh), the WeChat Pay simulator, N `scanpay serve` processes and
# HAProxy (deploy/haproxy.cfg with these ports), all on loopback. Ctrl-C stops everything.
#
#   bash scripts/cluster.sh [-n N] [--port PORT]
#
# HAProxy listens on PORT (8080), the instances on PORT+1 ... PORT+N, the simulator on
# PORT+10, HAProxy's statistics page on PORT+9 (/stats). Files (settings, logs) go in
# var/cluster/. Needs `bash scripts/setup.sh --test` first (PostgreSQL and HAProxy).
# Try a rolling restart: `kill -TERM <pid of one instance>` and start it again with the
# command printed below; its status streams move to the other instances.
set -euo pipefail
cd "$(dirname "$0")/.."
n=3
port=8080
while [ $# -gt 0 ]; do
    case "$1" in
        -n) n=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "cluster.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if ! [[ "$n" =~ ^[1-8]$ ]]; then echo "cluster.sh: -n must be 1 to 8" >&2; exit 2; fi
if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1024 ] || [ "$port" -gt 65000 ]; then
    echo "cluster.sh: --port must be 1024 to 65000" >&2; exit 2
fi
py=.venv/bin/python
[ -x "$py" ] || { echo "cluster.sh: run scripts/setup.sh --test first" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "cluster.sh: haproxy is not installed" >&2; exit 1; }

dir=$(pwd)/var/cluster
mkdir -p "$dir"
pids=()
cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "cluster.sh: stopped (logs in $dir)"
}
trap cleanup EXIT INT TERM

wait_http() {  # URL: until it answers 200
    for _ in $(seq 1 600); do
        if "$py" - "$1" <<'PY' 2>/dev/null; then return 0; fi
import sys, httpx
sys.exit(0 if httpx.get(sys.argv[1], timeout=1).status_code == 200 else 1)
PY
        sleep 0.2
    done
    echo "cluster.sh: $1 did not come up" >&2
    return 1
}

server=$(bash scripts/postgres.sh)
db_url=$("$py" - "$server" <<'PY'
import sys
import sqlalchemy as sa
url = sa.make_url(sys.argv[1])
admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
with admin.connect() as conn:
    if conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname='scanpay_cluster'").first() is None:
        conn.exec_driver_sql('CREATE DATABASE "scanpay_cluster"')
admin.dispose()
print(url.set(database="scanpay_cluster").render_as_string(False))
PY
)
"$py" -m scanpay.cli.main db upgrade --database-url "$db_url"

sim_port=$((port + 10))
"$py" -m scanpay.cli.main simulator --port "$sim_port" --state-dir "$dir/simulator" \
    --log-level warning >"$dir/simulator.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$sim_port/sim/clock"

env_file=$dir/scanpay.env
"$py" - "$dir/simulator" >"$env_file.new" <<PY
import secrets, sys
from pathlib import Path
from scanpay.simulator import credentials
creds, _ = credentials.load_or_create(Path(sys.argv[1]))
print("SCANPAY_DATABASE_URL=$db_url")
print("SCANPAY_MIGRATE_ON_STARTUP=false")
print("SCANPAY_PUBLIC_BASE_URL=http://127.0.0.1:$port")
print("SCANPAY_WECHAT_BASE_URL=http://127.0.0.1:$sim_port")
print("SCANPAY_SIMULATOR_PHONE_URL=http://127.0.0.1:$sim_port/sim/scan")
print(f"SCANPAY_APPID={creds.appid}")
print(f"SCANPAY_MCHID={creds.mchid}")
print(f"SCANPAY_API_V2_KEY={creds.api_v2_key.reveal()}")
print(f"SCANPAY_SHOP_API_KEY={secrets.token_urlsafe(24)}")
PY
if [ -f "$env_file" ]; then  # keep the shop key of an earlier run
    grep '^SCANPAY_SHOP_API_KEY=' "$env_file" >"$env_file.key" || true
    if [ -s "$env_file.key" ]; then
        grep -v '^SCANPAY_SHOP_API_KEY=' "$env_file.new" >"$env_file.tmp"
        cat "$env_file.key" >>"$env_file.tmp"
        mv "$env_file.tmp" "$env_file.new"
    fi
    rm -f "$env_file.key"
fi
mv "$env_file.new" "$env_file"
chmod 600 "$env_file"

servers=""
instances=""
for i in $(seq 1 "$n"); do
    p=$((port + i))
    SCANPAY_INSTANCE_NAME=i$i "$py" -m scanpay.cli.main serve --port "$p" --env-file "$env_file" \
        --log-level warning >>"$dir/instance-$i.log" 2>&1 &
    pids+=($!)
    servers+="    server i$i 127.0.0.1:$p check"$'\n'
    instances+="    i$i: http://127.0.0.1:$p, pid $!; to restart it: kill -TERM $!, then"$'\n'
    instances+="        SCANPAY_INSTANCE_NAME=i$i .venv/bin/scanpay serve --port $p --env-file $dir/scanpay.env"$'\n'
done
for i in $(seq 1 "$n"); do wait_http "http://127.0.0.1:$((port + i))/readyz"; done

{
    sed -e "s/^    bind 127\.0\.0\.1:[0-9]*$/    bind 127.0.0.1:$port/" -e '/^    server /d' deploy/haproxy.cfg
    printf '%s' "$servers"
    printf '\nlisten stats\n    bind 127.0.0.1:%s\n    stats enable\n    stats uri /stats\n' $((port + 9))
} >"$dir/haproxy.cfg"
haproxy -c -q -f "$dir/haproxy.cfg"
haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$port/readyz"

echo "scanpay cluster: $n instances behind HAProxy on PostgreSQL"
echo "  shop API and checkout: http://127.0.0.1:$port  (settings: $env_file)"
echo "  simulator:             http://127.0.0.1:$sim_port/sim"
echo "  HAProxy statistics:    http://127.0.0.1:$((port + 9))/stats"
echo "  database:              $db_url"
echo "  instances (a restarted one is not stopped by Ctrl-C here):"
printf '%s' "$instances"
echo "Ctrl-C stops everything."
wait
