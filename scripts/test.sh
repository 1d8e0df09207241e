#!/usr/bin/env bash
# Run every check scanpay has: lint, format, types, and the whole test suite (unit, simulator,
# service, PostgreSQL, cross-checks against wechatpy / wechatpayv3, and the headless-Chromium
# end-to-end test). Sets itself up first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export PATH="$PWD/.venv/bin:$PATH"
if [ -d tests/simulator/node/node_modules ]; then
    export SCANPAY_NODE_PATH="$PWD/tests/simulator/node/node_modules"
fi

echo "== ruff"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
echo "== mypy (strict)"
mypy
echo "== postgresql"
pg_data=$(bash scripts/postgres.sh --root)/data
pg_ctl=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/pg_ctl
pg_was_up=0
if [ -f "$pg_data/PG_VERSION" ] && runuser -u postgres -- "$pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
    pg_was_up=1
fi
SCANPAY_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)
if [ "$pg_was_up" = 0 ]; then
    # Stop the server this run started, however the run ends.
    trap 'runuser -u postgres -- "$pg_ctl" -D "$pg_data" stop -m fast >/dev/null 2>&1 || true' EXIT
fi
export SCANPAY_TEST_POSTGRES_URL
echo "$SCANPAY_TEST_POSTGRES_URL"
echo "== pytest"
set +e
python -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
if [ "$rc" = 5 ]; then
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
