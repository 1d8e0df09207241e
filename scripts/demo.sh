#!/usr/bin/env bash
# Set up (first time only) and run `scanpay demo`: the merchant service, the WeChat Pay
# simulator and a demo shop on this machine, with SQLite and generated credentials.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/scanpay demo "$@"
