"""Cross-checks against wechatpayv3 (an independent implementation; test-only dependency).

Property-based: random bodies, nonces and plaintexts go through scanpay one way and through
wechatpayv3's own utilities (``rsa_sign``/``rsa_verify``/``build_authorization``,
``aes_decrypt``, ``rsa_encrypt``/``rsa_decrypt``) the other way.
"""

from __future__ import annotations

import base64
import re

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpayv3 import utils as wp

from scanpay.wechat.keys import TrustStore, certificate_serial
from scanpay.wechat.secret import Secret
from scanpay.wechat.v3.aead import EncryptedResource, decrypt_resource, encrypt_resource
from scanpay.wechat.v3.certificates import build_certificates
from scanpay.wechat.v3.sensitive import decrypt_sensitive, encrypt_sensitive
from scanpay.wechat.v3.sign import (
    V3Merchant,
    build_authorization,
    parse_authorization,
    request_signing_string,
    verify_request,
)
from scanpay.wechat.v3.verify import sign_response, verify_response
from tests.wechat.v3.factories import API_V3_KEY, MCHID, PUBLIC_KEY_ID, certificate, rsa_key

KEY = Secret(API_V3_KEY)
text_body = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r"), max_size=200)
nonces = st.from_regex(r"[0-9A-Za-z]{12}", fullmatch=True)


def wechatpayv3_verify_request(authorization: str, method: str, url: str, body: str) -> bool:
    """A server-side verifier written from wechatpayv3's conventions: its header format and
    its ``rsa_verify`` primitive, applied to the five-line request string."""
    match = re.fullmatch(r"WECHATPAY2-SHA256-RSA2048 (.*)", authorization)
    assert match is not None
    pairs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
    message = f"{method}\n{url}\n{pairs['timestamp']}\n{pairs['nonce_str']}\n{body}\n"
    return _verify_raw(message, pairs["signature"])


def _verify_raw(message: str, signature: str) -> bool:
    # rsa_verify signs "{timestamp}\n{nonce}\n{body}\n": feed the first two lines as
    # timestamp/nonce and the rest as body, which reproduces ``message`` byte for byte.
    first, second, rest = message.split("\n", 2)
    return bool(
        wp.rsa_verify(first, second, rest[:-1], signature, rsa_key("merchant").public_key())
    )


@settings(max_examples=40, deadline=None)
@given(
    body=text_body, nonce=st.from_regex(r"[0-9A-Z]{32}", fullmatch=True), ts=st.integers(1, 2**31)
)
def test_scanpay_authorization_accepted_by_wechatpayv3_conventions(
    body: str, nonce: str, ts: int
) -> None:
    merchant = V3Merchant(MCHID, "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB", rsa_key("merchant"))
    header = build_authorization(
        merchant, "POST", "/v3/pay/transactions/native", body.encode(), timestamp=ts, nonce=nonce
    )
    assert wechatpayv3_verify_request(header, "POST", "/v3/pay/transactions/native", body)


@settings(max_examples=40, deadline=None)
@given(body=text_body, nonce=st.from_regex(r"[0-9A-Z]{32}", fullmatch=True))
def test_wechatpayv3_authorization_accepted_by_scanpay(body: str, nonce: str) -> None:
    cert = certificate(rsa_key("merchant"), 0x408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB)
    serial = certificate_serial(cert)
    header = wp.build_authorization(
        "/v3/pay/transactions/native", "POST", MCHID, serial, rsa_key("merchant"),
        data=body, nonce_str=nonce,
    )  # fmt: skip
    now = int(parse_authorization(header).timestamp)
    auth = verify_request(
        header,
        "POST",
        "/v3/pay/transactions/native",
        body.encode(),
        TrustStore(certificates=[cert]),
        now=now,
    )
    assert auth.nonce_str == nonce


@settings(max_examples=40, deadline=None)
@given(
    body=text_body,
    nonce=st.from_regex(r"[0-9A-Za-z]{32}", fullmatch=True),
    ts=st.integers(1, 2**31),
)
def test_response_signatures_both_ways(body: str, nonce: str, ts: int) -> None:
    headers = sign_response(
        body.encode(),
        serial=PUBLIC_KEY_ID,
        private_key=rsa_key("wechat"),
        timestamp=ts,
        nonce=nonce,
    )
    assert wp.rsa_verify(
        str(ts), nonce, body, headers["Wechatpay-Signature"], rsa_key("wechat").public_key()
    )
    theirs = wp.rsa_sign(rsa_key("wechat"), f"{ts}\n{nonce}\n{body}\n")
    assert theirs == headers["Wechatpay-Signature"]
    trust = TrustStore(public_keys=[(PUBLIC_KEY_ID, rsa_key("wechat").public_key())])
    verify_response({**headers, "Wechatpay-Signature": theirs}, body.encode(), trust, now=ts)


@settings(max_examples=50, deadline=None)
@given(
    plaintext=text_body,
    nonce=nonces,
    aad=st.sampled_from(["transaction", "refund", "certificate", ""]),
)
def test_resources_both_ways(plaintext: str, nonce: str, aad: str) -> None:
    ours = encrypt_resource(plaintext.encode(), KEY, nonce=nonce, associated_data=aad)
    assert wp.aes_decrypt(nonce, ours.ciphertext, aad, API_V3_KEY) == plaintext
    sealed = AESGCM(API_V3_KEY.encode()).encrypt(nonce.encode(), plaintext.encode(), aad.encode())
    theirs = EncryptedResource(base64.b64encode(sealed).decode(), nonce, aad)
    assert decrypt_resource(theirs, KEY) == plaintext.encode()


def test_certificates_payload_decrypts_with_wechatpayv3() -> None:
    import json

    cert = certificate(rsa_key("platform"), 0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1)
    body = json.loads(build_certificates([cert], KEY, nonces=["61f9c719728a"]))
    enc = body["data"][0]["encrypt_certificate"]
    pem = wp.aes_decrypt(enc["nonce"], enc["ciphertext"], enc["associated_data"], API_V3_KEY)
    loaded = wp.load_certificate(pem)
    assert loaded is not None
    assert format(loaded.serial_number, "X") == body["data"][0]["serial_no"]


@settings(max_examples=10, deadline=None)
@given(plaintext=st.text(max_size=60))
def test_oaep_both_ways(plaintext: str) -> None:
    key = rsa_key("wechat")
    assert wp.rsa_decrypt(encrypt_sensitive(plaintext, key.public_key()), key) == plaintext
    assert decrypt_sensitive(wp.rsa_encrypt(plaintext, key.public_key()), key) == plaintext


def test_official_request_string_matches_wechatpayv3_layout() -> None:
    message = request_signing_string("GET", "/v3/a?b=c", 1, "n", b"")
    assert message == b"GET\n/v3/a?b=c\n1\nn\n\n"
