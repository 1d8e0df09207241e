"""``scanpay simulator``: the local WeChat Pay on ``--host``/``--port``, state in ``--state-dir``.

On start it prints where the test merchant's credentials are and configuration ready to paste
for scanpay (``SCANPAY_*`` variables), wechatpy and wechatpayv3 (public-key and certificate
mode; the latter reads ``DIR/wechatpayv3-certs``, made here). Secrets are printed on
purpose: they belong to a simulated merchant that exists only in ``--state-dir``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from scanpay.errors import ConfigurationError, ValidationError
from scanpay.simulator import MerchantCredentials, Simulator, tls
from scanpay.simulator.faults import SCENARIOS, FaultSpec, parse_fault, scenario
from scanpay.simulator.refund_control import choose_outcome


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path("scanpay-simulator"),
        help="where credentials and the ledger are kept (created on first start)",
    )
    parser.add_argument(
        "--public-url",
        default=None,
        help="origin that browsers and SDKs use to reach it (default http://HOST:PORT)",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[=VALUE][:TIMES][@SCOPE]",
        help="switch a fault on from the start, e.g. drop_notifications=0.3 (repeatable; "
        "see docs/simulator.md)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help=f"a named set of faults: {', '.join(SCENARIOS)} (repeatable)",
    )
    parser.add_argument(
        "--fault-seed", type=int, default=None, help="seed of the faults' random source"
    )
    # issue 15
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with the simulator's own CA (DIR/simulator_ca.pem) and require the "
        "merchant certificate on /secapi/ (mutual TLS, as WeChat does)",
    )
    parser.add_argument(
        "--signature-clock",
        choices=["real", "test"],
        default=None,
        help="check and stamp v3 signature times against real time or the test clock "
        "(default: as last set, else real)",
    )
    parser.add_argument(
        "--refund-outcome",
        choices=["success", "closed", "abnormal"],
        default=None,
        help="what refunds become when they come due (default: as last set, else success)",
    )


def apply_fault_flags(sim: Simulator, args: argparse.Namespace) -> list[FaultSpec]:
    """Switch on what ``--fault`` / ``--scenario`` / ``--fault-seed`` ask for."""
    specs = [spec for name in args.scenario for spec in scenario(name)]
    specs.extend(parse_fault(text) for text in args.fault)
    if args.fault_seed is not None:
        sim.faults.seed(args.fault_seed)
    sim.faults.set(specs, now=sim.clock.timestamp())
    return specs


CERT_DIR: Final = "wechatpayv3-certs"


def prepare_cert_dir(sim: Simulator) -> Path | None:
    """``DIR/wechatpayv3-certs`` holding the platform certificate, for SDKs in certificate
    mode that load their certificates from a folder (wechatpayv3's ``cert_dir``)."""
    creds = sim.credentials
    if creds.state_dir is None:
        return None
    folder = creds.state_dir / CERT_DIR
    folder.mkdir(exist_ok=True)
    target = folder / f"{creds.platform_serial_no}.pem"
    if not target.exists():
        target.write_text(creds.platform_certificate_pem, encoding="ascii")
    return folder


def configuration(sim: Simulator, base_url: str) -> dict[str, str]:
    """Ready-to-paste configuration per client: scanpay's environment and Python snippets."""
    creds: MerchantCredentials = sim.credentials
    on_disk = creds.state_dir is not None
    v2_key = creds.api_v2_key.reveal()
    v3_key = creds.api_v3_key.reveal()
    key_path = creds.path("merchant_private_key").resolve() if on_disk else "<in memory>"
    cert_path = creds.path("merchant_certificate").resolve() if on_disk else "<in memory>"
    pub_path = creds.path("wechatpay_public_key").resolve() if on_disk else "<in memory>"
    cert_dir = (creds.state_dir / CERT_DIR).resolve() if creds.state_dir else "<in memory>"
    v3_common = f"""\
from pathlib import Path
from wechatpayv3 import WeChatPay, WeChatPayType
pay = WeChatPay(
    wechatpay_type=WeChatPayType.NATIVE, mchid="{creds.mchid}", appid="{creds.appid}",
    private_key=Path("{key_path}").read_text(), cert_serial_no="{creds.merchant_serial_no}",
    apiv3_key="{v3_key}", notify_url="http://127.0.0.1:8000/notify","""
    return {
        "scanpay (environment; also set SCANPAY_SHOP_API_KEY and SCANPAY_PUBLIC_BASE_URL)": f"""\
SCANPAY_WECHAT_BASE_URL={base_url}
SCANPAY_API_VERSION=v3
SCANPAY_APPID={creds.appid}
SCANPAY_MCHID={creds.mchid}
SCANPAY_API_V2_KEY={v2_key}
SCANPAY_API_V3_KEY={v3_key}
SCANPAY_MERCHANT_SERIAL_NO={creds.merchant_serial_no}
SCANPAY_MERCHANT_KEY_FILE={key_path}
SCANPAY_MERCHANT_CERT_FILE={cert_path}
SCANPAY_WECHATPAY_PUBLIC_KEY_ID={creds.wechatpay_public_key_id}
SCANPAY_WECHATPAY_PUBLIC_KEY_FILE={pub_path}
SCANPAY_SIMULATOR_PHONE_URL={base_url}/sim/scan
""",
        "wechatpy (API v2)": f"""\
from wechatpy.pay import WeChatPay
client = WeChatPay(appid="{creds.appid}", api_key="{v2_key}", mch_id="{creds.mchid}",
                   mch_cert="{cert_path}", mch_key="{key_path}")
client.API_BASE_URL = "{base_url}/"
""",
        "wechatpayv3 (API v3, public-key mode)": f"""\
{v3_common}
    public_key=Path("{pub_path}").read_text(), public_key_id="{creds.wechatpay_public_key_id}",
)
pay._core._gate_way = "{base_url}"
""",
        "wechatpayv3 (API v3, certificate mode)": f"""\
{v3_common}
    cert_dir="{cert_dir}",
)
pay._core._gate_way = "{base_url}"
""",
    }


def banner(sim: Simulator, base_url: str) -> str:
    """What to paste where, for this simulator's merchant."""
    creds = sim.credentials
    state_dir = creds.state_dir.resolve() if creds.state_dir else None
    where = f"{state_dir / 'merchant.json'} (PEM files beside it)" if state_dir else "in memory"
    head = f"""\
scanpay WeChat Pay simulator
  API (WeChat paths at the root): {base_url}/pay/unifiedorder, {base_url}/v3/...
  phone page:                     {base_url}/sim/scan?code_url=...
  orders and notifications:       {base_url}/sim
  credentials:                    {where}
"""
    sections = [f"# --- {name} ---\n{text}" for name, text in configuration(sim, base_url).items()]
    return "\n".join([head, *sections])


def trust_banner(ca_file: Path) -> str:
    """What to trust when the simulator serves HTTPS (``--tls``)."""
    ca = ca_file.resolve()
    return f"""\
# --- HTTPS (--tls): trust the simulator's CA ---
CA certificate:  {ca}
wechatpy / requests:   export REQUESTS_CA_BUNDLE={ca}
OpenSSL-based tools:   export SSL_CERT_FILE={ca}
Node:                  export NODE_EXTRA_CA_CERTS={ca}
scanpay serve:         export SSL_CERT_FILE={ca} (and SCANPAY_MERCHANT_CERT_FILE/_KEY_FILE)
scanpay V2Client:      V2Client(..., server_ca_pem=Path("{ca}").read_text())
/secapi/ (refunds) needs the merchant certificate: wechatpy's mch_cert/mch_key as above
(without it: HTTP 400 "No required SSL certificate was sent")
"""


def run(args: argparse.Namespace) -> int:
    import uvicorn

    scheme = "https" if args.tls else "http"
    base_url = args.public_url or f"{scheme}://{args.host}:{args.port}"
    sim = Simulator.create(args.state_dir, public_url=base_url)
    options: dict[str, object] = {}
    try:
        active = apply_fault_flags(sim, args)
        if args.signature_clock:
            sim.set_signature_clock(args.signature_clock)
        if args.refund_outcome:
            choose_outcome(sim, args.refund_outcome)
        if args.tls:
            files = tls.prepare(sim.credentials, [args.host])
            sim.require_client_certificate = True
            options = files.uvicorn_options()
    except (ValidationError, ConfigurationError) as exc:
        sim.close()
        print(f"scanpay simulator: {exc.message}", file=sys.stderr)
        return 2
    prepare_cert_dir(sim)
    print(banner(sim, base_url.rstrip("/")), flush=True)
    if args.tls:
        print(trust_banner(files.ca_certificate), flush=True)
    if active:
        names = ", ".join(f"{s.fault.value}={s.value:g}" for s in active)
        print(f"faults switched on: {names}", flush=True)
    try:
        uvicorn.run(
            sim.app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            http="h11",  # as serve (serve_cmd.py)
            **options,  # type: ignore[arg-type]
        )
    finally:
        sim.close()
    return 0
