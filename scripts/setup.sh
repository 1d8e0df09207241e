#!/usr/bin/env bash
# Prepare this checkout: a virtual environment with scanpay installed (editable) and, with
# --test, the test-only dependencies plus the Debian packages the tests use (Chromium,
# ChromeDriver, PostgreSQL, HAProxy, PgBouncer). Quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi

# Re-install only when pyproject.toml changed since the last successful install. The test
# install includes the base one, so either stamp satisfies the demo.
sig=$(sha256sum pyproject.toml | cut -d' ' -f1)
stamp_base=.venv/.scanpay-base
stamp_test=.venv/.scanpay-test
if [ "$want_test" = 1 ]; then
    stamps=("$stamp_test"); extras="[test]"; mine=$stamp_test
else
    stamps=("$stamp_base" "$stamp_test"); extras=""; mine=$stamp_base
fi
fresh=0
for s in "${stamps[@]}"; do
    [ -f "$s" ] && [ "$(cat "$s")" = "$sig" ] && fresh=1
done
if [ "$fresh" = 0 ]; then
    echo "setup: installing scanpay$extras into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".$extras"
    echo "$sig" > "$mine"
fi

if [ "$want_test" = 1 ]; then
    need=()
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
    command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
    # transaction pooling in front of PostgreSQL (tests/web/test_pgbouncer.py)
    [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
    # Chinese text in the browser tests' screenshots
    [ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
    if [ "${#need[@]}" -gt 0 ]; then
        echo "setup: installing Debian packages: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi

# axe-core, injected into pages by the browser tests (tests/e2e/axe.py), pinned by its lock file.
if [ "$want_test" = 1 ]; then
    axe_dir=tests/e2e/node
    if [ ! -f "$axe_dir/node_modules/axe-core/axe.min.js" ] ||
        [ "$axe_dir/package-lock.json" -nt "$axe_dir/node_modules/.package-lock.json" ]; then
        echo "setup: installing axe-core for the accessibility tests"
        (cd "$axe_dir" && npm ci --no-audit --no-fund --silent)
    fi
fi

# The Node SDK cross-check (tests/simulator/test_sdk_flows_node.py) needs wechatpay-axios-plugin
# and wechatpay-node-v3 from the npm registry, pinned by tests/simulator/node/package-lock.json.
if [ "$want_test" = 1 ] && command -v npm >/dev/null 2>&1; then
    node_dir=tests/simulator/node
    if [ ! -d "$node_dir/node_modules/wechatpay-axios-plugin" ] ||
        [ ! -d "$node_dir/node_modules/wechatpay-node-v3" ] ||
        [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
        echo "setup: installing the Node SDK used by the cross-check tests"
        (cd "$node_dir" && npm ci --no-audit --no-fund --silent)
    fi
fi
