"""The Node SDK ``wechatpay-axios-plugin``, unmodified, only ``baseURL`` changed, runs a
whole v3 Native flow against the simulator (``tests/simulator/node/flow.js``): prepay, pay,
the payment and refund notifications verified with the configured key and decrypted with the
SDK's ``Rsa``/``AesGcm``, query, refund query, close, and a v2 query with the SDK's sign check.

The most used Node v3 SDK, ``wechatpay-node-v3``, runs the same flow in certificate mode
(``tests/simulator/node/flow_node_v3.js``): prepay, pay, the payment notification checked with
``pay.verifySign`` (which fetches ``/v3/certificates``) and opened with ``pay.decipher_gcm``,
query by number and by id, refund, the refund notification, refund query, close.

``scripts/setup.sh --test`` installs both packages pinned by ``node/package-lock.json`` and
``scripts/test.sh`` points ``SCANPAY_NODE_PATH`` at it; without that variable the test is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanpay.simulator import Simulator

from .live import serve_simulator

FLOW = Path(__file__).parent / "node" / "flow.js"
FLOW_NODE_V3 = Path(__file__).parent / "node" / "flow_node_v3.js"
NODE = shutil.which("node")
NODE_PATH = os.environ.get("SCANPAY_NODE_PATH", "")


def _plugin_available(package: str = "wechatpay-axios-plugin") -> bool:
    if NODE is None or not NODE_PATH:
        return False
    probe = subprocess.run(
        [NODE, "-e", f"require.resolve('{package}')"],
        env={**os.environ, "NODE_PATH": NODE_PATH},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


# scripts/test.sh installs the package and sets SCANPAY_NODE_PATH, so there the test must run;
# a bare `pytest` elsewhere skips it.
pytestmark = pytest.mark.skipif(
    not NODE_PATH,
    reason="needs node and the Node SDKs (set SCANPAY_NODE_PATH to their node_modules)",
)


@pytest.mark.parametrize("package", ["wechatpay-axios-plugin", "wechatpay-node-v3"])
def test_node_sdk_is_installed_where_promised(package: str) -> None:
    assert _plugin_available(package), f"{package} not found under {NODE_PATH}"


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Simulator, str]]:
    with serve_simulator() as (sim, base_url):
        sim.refunds.settle_after = 0
        yield sim, base_url


@pytest.mark.parametrize("mode", ["public-key", "certificate"])
def test_node_wechatpay_axios_plugin_flow(
    live: tuple[Simulator, str], tmp_path: Path, mode: str
) -> None:
    sim, base_url = live
    creds = sim.credentials
    config = {
        "baseURL": base_url,
        "mchid": creds.mchid,
        "appid": creds.appid,
        "serial": creds.merchant_serial_no,
        "privateKey": creds.merchant_private_key_pem.reveal(),
        "apiv3Key": creds.api_v3_key.reveal(),
        "secret": creds.api_v2_key.reveal(),
        "mode": mode,
        "publicKeyId": creds.wechatpay_public_key_id,
        "publicKey": creds.wechatpay_public_key_pem,
        "platformSerial": creds.platform_serial_no,
        "platformCertificate": creds.platform_certificate_pem,
        "prefix": f"node-{mode}",
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert NODE is not None
    run = subprocess.run(
        [NODE, str(FLOW), str(path)],
        env={**os.environ, "NODE_PATH": NODE_PATH},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out: dict[str, Any] = json.loads(run.stdout)
    assert out["payment"]["ok"] is True
    assert out["payment"]["resource"]["event"] == "TRANSACTION.SUCCESS"
    assert out["payment"]["resource"]["transaction_id"] == out["paid_transaction_id"]
    assert out["trade_state"] == "SUCCESS"
    assert out["refund_status"] == "PROCESSING"
    assert out["refund"]["ok"] is True
    assert out["refund"]["resource"]["event"] == "REFUND.SUCCESS"
    assert out["refund"]["resource"]["refund_status"] == "SUCCESS"
    assert out["refund_query_status"] == "SUCCESS"
    assert out["close_status"] == 204
    assert out["v2_trade_state"] == "REFUND"


def test_node_wechatpay_node_v3_flow(live: tuple[Simulator, str], tmp_path: Path) -> None:
    """wechatpay-node-v3 (certificate mode: the SDK has no public-key mode) through its own
    HTTP service with the origin changed (``pay.createHttp``), see ``node/flow_node_v3.js``."""
    sim, base_url = live
    creds = sim.credentials
    config = {
        "baseURL": base_url,
        "mchid": creds.mchid,
        "appid": creds.appid,
        "privateKey": creds.merchant_private_key_pem.reveal(),
        "merchantCertificate": creds.merchant_certificate_pem,
        "apiv3Key": creds.api_v3_key.reveal(),
        "prefix": "node-v3",
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert NODE is not None
    run = subprocess.run(
        [NODE, str(FLOW_NODE_V3), str(path)],
        env={**os.environ, "NODE_PATH": NODE_PATH},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out: dict[str, Any] = json.loads(run.stdout)
    # the SDK read the merchant serial from apiclient_cert.pem, and the simulator accepted it
    assert out["serial_no"].upper() == creds.merchant_serial_no
    assert out["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert out["payment"]["ok"] is True, out["payment"]
    assert out["payment"]["resource"]["event"] == "TRANSACTION.SUCCESS"
    assert out["payment"]["resource"]["transaction_id"] == out["paid_transaction_id"]
    assert out["trade_state"] == "SUCCESS"
    assert out["query_by_id_out_trade_no"] == "node-v3-1"
    assert out["refund_status"] == "PROCESSING"
    assert out["refund"]["ok"] is True
    assert out["refund"]["resource"]["event"] == "REFUND.SUCCESS"
    assert out["refund"]["resource"]["refund_status"] == "SUCCESS"
    assert out["refund_query_status"] == "SUCCESS"
    assert out["close_status"] == 204
    assert out["closed_trade_state"] == "CLOSED"
    # every call went through the simulator's ledger
    order = sim.ledger.order("node-v3-1")
    assert order is not None
    assert order.api == "v3"
