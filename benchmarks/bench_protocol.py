"""Per-operation cost of scanpay's protocol core beside wechatpy, wechatpayv3 and the bare
``hashlib`` / ``cryptography`` calls (the floor), on the same inputs in the same run.

Run: ``.venv/bin/python benchmarks/bench_protocol.py [--rounds N] [--scale X]``. Each figure
is the best of several rounds of a tight ``time.perf_counter`` loop (best-of damps noise from
other work on a shared machine). Ratios are to the floor measured in this run. Keys are
generated at start; nothing is read from disk or the network.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3 import utils as wp_utils
from wechatpayv3.core import Core as WechatPayV3Core
from wechatpy.pay.utils import calculate_signature as wechatpy_sign

from scanpay.wechat.fields import BEIJING
from scanpay.wechat.keys import TrustStore
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import TradeState
from scanpay.wechat.v2.sign import sign_v2
from scanpay.wechat.v3.aead import api_v3_cipher
from scanpay.wechat.v3.notify import build_notification, verify_notification
from scanpay.wechat.v3.sign import V3Merchant, build_authorization
from scanpay.wechat.v3.transactions import Transaction
from scanpay.wechat.v3.verify import sign_response, verify_response

MCHID = "1900007291"
SERIAL = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"
PUB_ID = "PUB_KEY_ID_0119000072912025010100000000000000"
API_V3_KEY = "0123456789abcdefghijABCDEFGHIJ01"
V2_KEY = "192006250b4c09247ec02edce69f6a2d"
TS = 1_700_000_000
NONCE = "593BEC0C930BF1AFEB40B4A08C8FB242"
PKCS1 = padding.PKCS1v15()
SHA256 = hashes.SHA256()

V2_FIELDS = {
    "appid": "wxd930ea5d5a258f4f", "mch_id": "10000100", "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA", "notify_url": "https://example.com/wxpay/notify",
    "out_trade_no": "20150806125346", "product_id": "12235413214070356458058",
    "spbill_create_ip": "123.12.12.123", "total_fee": "1", "trade_type": "NATIVE",
}  # fmt: skip
PREPAY_BODY = (
    '{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"Image形象店-深圳腾大-QQ公仔",'
    '"out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php",'
    '"amount":{"total":100,"currency":"CNY"}}'
)
PREPAY_PATH = "/v3/pay/transactions/native"


def best_per_op(
    impls: list[tuple[str, Callable[[], object]]], loops: int, rounds: int
) -> list[float]:
    """Best-of-``rounds`` seconds per call for each implementation. Rounds interleave the
    implementations so that all of them meet the same background load."""
    best = [float("inf")] * len(impls)
    for _ in range(rounds):
        for index, (_, fn) in enumerate(impls):
            start = time.perf_counter()
            for _ in range(loops):
                fn()
            best[index] = min(best[index], (time.perf_counter() - start) / loops)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply loop counts")
    args = parser.parse_args()

    merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wechat_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wechat_pub = wechat_key.public_key()
    merchant_pem = merchant_key.private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    ).decode()
    wechat_pub_pem = wechat_pub.public_bytes(
        ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo
    ).decode()

    # --- scanpay objects (built once, as a long-lived client would) ---
    v2_key = Secret(V2_KEY)
    merchant = V3Merchant(MCHID, SERIAL, merchant_key)
    trust = TrustStore(public_keys=[(PUB_ID, wechat_pub)])
    cipher = api_v3_cipher(Secret(API_V3_KEY))
    # --- peers ---
    peer_v3 = WechatPayV3Core(
        MCHID, SERIAL, merchant_pem, API_V3_KEY, public_key=wechat_pub_pem, public_key_id=PUB_ID
    )

    # inputs shared by everyone
    response_body = b'{"code_url":"weixin://wxpay/bizpayurl?pr=abcdefg"}'
    response_headers = sign_response(
        response_body, serial=PUB_ID, private_key=wechat_key, timestamp=TS, nonce=NONCE
    )
    transaction = Transaction(
        appid="wxd678efh567hg6787",
        mchid=MCHID,
        out_trade_no="1217752501201407033233368018",
        trade_state=TradeState.SUCCESS,
        trade_state_desc="支付成功",
        transaction_id="4200000000202401010000000001",
        trade_type="NATIVE",
        bank_type="OTHERS",
        success_time=datetime(2024, 1, 1, 12, 0, tzinfo=BEIJING),
        payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        total=100,
        payer_total=100,
    )
    notify_body = build_notification(
        transaction, cipher, notification_id="EV-2018022511223320873",
        create_time=datetime(2024, 1, 1, 12, 0, 1, tzinfo=BEIJING), nonce="fGd3sq8aPbXy",
    )  # fmt: skip
    notify_headers = sign_response(
        notify_body, serial=PUB_ID, private_key=wechat_key, timestamp=TS, nonce=NONCE
    )
    notify_text = notify_body.decode()
    response_text = response_body.decode()
    aes = AESGCM(API_V3_KEY.encode())
    prepay_bytes = PREPAY_BODY.encode()

    # --- floors: the bare library calls each operation cannot avoid ---
    def floor_v2() -> object:
        text = "&".join(f"{k}={v}" for k, v in sorted(V2_FIELDS.items()) if v) + "&key=" + V2_KEY
        return hashlib.md5(text.encode()).hexdigest().upper()

    def floor_sign() -> object:
        message = f"POST\n{PREPAY_PATH}\n{TS}\n{NONCE}\n{PREPAY_BODY}\n".encode()
        return base64.b64encode(merchant_key.sign(message, PKCS1, SHA256))

    sig = base64.b64decode(response_headers["Wechatpay-Signature"])

    def floor_verify() -> object:
        return wechat_pub.verify(
            sig, f"{TS}\n{NONCE}\n".encode() + response_body + b"\n", PKCS1, SHA256
        )

    notify_sig = base64.b64decode(notify_headers["Wechatpay-Signature"])

    def floor_notify() -> object:
        wechat_pub.verify(
            notify_sig, f"{TS}\n{NONCE}\n".encode() + notify_body + b"\n", PKCS1, SHA256
        )
        resource = json.loads(notify_body)["resource"]
        plain = aes.decrypt(
            resource["nonce"].encode(),
            base64.b64decode(resource["ciphertext"]),
            resource["associated_data"].encode(),
        )
        return json.loads(plain)

    def ours_sign() -> object:
        return build_authorization(
            merchant, "POST", PREPAY_PATH, prepay_bytes, timestamp=TS, nonce=NONCE
        )

    def peer_sign() -> object:
        return wp_utils.build_authorization(
            PREPAY_PATH,
            "POST",
            MCHID,
            SERIAL,
            peer_v3._private_key,
            data=PREPAY_BODY,
            nonce_str=NONCE,
        )

    def ours_verify() -> object:
        return verify_response(response_headers, response_body, trust, now=TS)

    def peer_verify() -> object:
        return peer_v3._verify_signature(response_headers, response_text)

    def ours_notify() -> object:
        return verify_notification(notify_headers, notify_body, trust, cipher, now=TS)

    def peer_notify() -> object:
        return peer_v3.callback(notify_headers, notify_text)

    cases: list[tuple[str, int, list[tuple[str, Callable[[], object]]]]] = [
        ("v2 sign (MD5)", 20000, [
            ("floor: hashlib", floor_v2),
            ("scanpay sign_v2", lambda: sign_v2(V2_FIELDS, v2_key)),
            ("wechatpy calculate_signature", lambda: wechatpy_sign(V2_FIELDS, V2_KEY)),
        ]),
        ("v3 request sign", 300, [
            ("floor: cryptography sign", floor_sign),
            ("scanpay build_authorization", ours_sign),
            ("wechatpayv3 build_authorization", peer_sign),
        ]),
        ("v3 response verify", 5000, [
            ("floor: cryptography verify", floor_verify),
            ("scanpay verify_response", ours_verify),
            ("wechatpayv3 Core._verify_signature", peer_verify),
        ]),
        ("v3 notification verify+decrypt", 4000, [
            ("floor: verify+json+AESGCM", floor_notify),
            ("scanpay verify_notification", ours_notify),
            ("wechatpayv3 Core.callback", peer_notify),
        ]),
    ]  # fmt: skip

    # sanity: every implementation accepts the inputs
    assert peer_v3._verify_signature(response_headers, response_text)
    assert (
        peer_v3.callback(notify_headers, notify_text)["resource"]["out_trade_no"]
        == transaction.out_trade_no
    )
    assert sign_v2(V2_FIELDS, v2_key) == wechatpy_sign(V2_FIELDS, V2_KEY) == floor_v2()

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"best of {args.rounds} rounds")  # fmt: skip
    print(f"{'operation':34} {'implementation':36} {'µs/op':>10} {'x floor':>8}")
    for title, loops, impls in cases:
        n = max(1, int(loops * args.scale))
        results = best_per_op(impls, n, args.rounds)
        floor = results[0]
        for (name, _), per in zip(impls, results, strict=True):
            print(f"{title:34} {name:36} {per * 1e6:10.2f} {per / floor:8.2f}")
        print()


if __name__ == "__main__":
    main()
