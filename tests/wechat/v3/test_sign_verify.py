"""Authorization header (both sides) and response verification, including hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanpay.errors import (
    MalformedMessageError,
    SignatureError,
    StaleMessageError,
    UnknownKeyError,
)
from scanpay.wechat.keys import TrustStore, certificate_serial
from scanpay.wechat.v3.sign import (
    V3Merchant,
    build_authorization,
    parse_authorization,
    verify_request,
)
from scanpay.wechat.v3.verify import read_signed_headers, sign_response, verify_response
from tests.wechat.v3.factories import MCHID, NOW, PUBLIC_KEY_ID, certificate, rsa_key

BODY = b'{"code_url":"weixin://wxpay/bizpayurl?pr=abc"}'


def merchant_setup() -> tuple[V3Merchant, TrustStore]:
    cert = certificate(rsa_key("merchant"), 0x408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB)
    return V3Merchant(MCHID, certificate_serial(cert), rsa_key("merchant")), TrustStore(
        certificates=[cert]
    )


def wechat_trust() -> TrustStore:
    trust = TrustStore(public_keys=[(PUBLIC_KEY_ID, rsa_key("wechat").public_key())])
    trust.add_certificate(
        certificate(rsa_key("platform"), 0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1)
    )
    return trust


def signed_headers(
    body: bytes = BODY, *, ts: int = NOW, serial: str = PUBLIC_KEY_ID
) -> dict[str, str]:
    key = rsa_key("wechat") if serial.startswith("PUB_KEY_ID_") else rsa_key("platform")
    return sign_response(body, serial=serial, private_key=key, timestamp=ts, nonce="n0nce")


# --- Authorization, both sides -----------------------------------------------------------


def test_request_round_trip() -> None:
    merchant, keys = merchant_setup()
    body = b'{"mchid":"1900007291"}'
    header = build_authorization(merchant, "POST", "/v3/x?a=1", body, timestamp=NOW, nonce="abc")
    auth = verify_request(header, "POST", "/v3/x?a=1", body, keys, now=NOW + 299)
    assert auth.mchid == MCHID
    assert auth.serial_no == merchant.serial_no


def test_pair_order_is_not_significant() -> None:
    merchant, keys = merchant_setup()
    header = build_authorization(merchant, "GET", "/v3/y", b"", timestamp=NOW, nonce="abc")
    a = parse_authorization(header)
    reordered = (
        f'WECHATPAY2-SHA256-RSA2048 mchid="{a.mchid}",nonce_str="{a.nonce_str}",'
        f'timestamp="{a.timestamp}",serial_no="{a.serial_no}",signature="{a.signature}"'
    )
    assert verify_request(reordered, "GET", "/v3/y", b"", keys, now=NOW) == a


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda h: h.replace("WECHATPAY2-SHA256-RSA2048", "Bearer"), MalformedMessageError),
        (lambda h: h.replace(',serial_no="', ',serial_no2="'), MalformedMessageError),
        (lambda h: h + ',mchid="1"', MalformedMessageError),
        (lambda h: h.replace(',timestamp="', ', timestamp="'), MalformedMessageError),
        (lambda h: h + ",", MalformedMessageError),
        (lambda h: h.split(",serial_no=")[0], MalformedMessageError),
        (lambda h: "", MalformedMessageError),
        (lambda h: h.replace('timestamp="1554208460"', 'timestamp="abc"'), MalformedMessageError),
        (
            lambda h: h.replace('timestamp="1554208460"', 'timestamp="1554208000"'),
            StaleMessageError,
        ),
        (
            lambda h: h.replace('timestamp="1554208460"', 'timestamp="1554208800"'),
            StaleMessageError,
        ),
        (lambda h: h.replace('serial_no="408B', 'serial_no="508B'), UnknownKeyError),
        (lambda h: h.replace('nonce_str="abc"', 'nonce_str="abd"'), SignatureError),
        (lambda h: h.replace('signature="', 'signature="!'), SignatureError),
    ],
)
def test_hostile_authorization(change: object, error: type[Exception]) -> None:
    merchant, keys = merchant_setup()
    header = build_authorization(merchant, "POST", "/v3/x", b"{}", timestamp=NOW, nonce="abc")
    assert callable(change)
    with pytest.raises(error):
        verify_request(change(header), "POST", "/v3/x", b"{}", keys, now=NOW)


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [("GET", "/v3/x", b"{}"), ("POST", "/v3/x?a=2", b"{}"), ("POST", "/v3/x", b"{ }")],
)
def test_request_tampering(method: str, url: str, body: bytes) -> None:
    merchant, keys = merchant_setup()
    header = build_authorization(merchant, "POST", "/v3/x", b"{}", timestamp=NOW, nonce="abc")
    with pytest.raises(SignatureError) as info:
        verify_request(header, method, url, body, keys, now=NOW)
    assert type(info.value) is SignatureError


@settings(max_examples=40, deadline=None)
@given(
    path=st.from_regex(r"/v3/[a-z\-/]{1,30}(\?[a-z]{1,5}=[0-9A-Za-z%]{1,10})?", fullmatch=True),
    body=st.binary(max_size=200),
    nonce=st.from_regex(r"[0-9A-Z]{32}", fullmatch=True),
    ts=st.integers(min_value=1_500_000_000, max_value=2_000_000_000),
)
def test_request_round_trip_property(path: str, body: bytes, nonce: str, ts: int) -> None:
    merchant, keys = merchant_setup()
    header = build_authorization(merchant, "POST", path, body, timestamp=ts, nonce=nonce)
    assert verify_request(header, "POST", path, body, keys, now=ts).nonce_str == nonce


# --- responses and notifications -----------------------------------------------------------


@pytest.mark.parametrize("serial", [PUBLIC_KEY_ID, "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"])
def test_response_verifies_with_either_kind_of_key(serial: str) -> None:
    headers = signed_headers(serial=serial)
    assert verify_response(headers, BODY, wechat_trust(), now=NOW).serial == serial


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in signed_headers().items()}
    verify_response(headers, BODY, wechat_trust(), now=NOW)
    upper = [(k.upper(), v) for k, v in signed_headers().items()]
    verify_response(upper, BODY, wechat_trust(), now=NOW)


def test_empty_body_of_204() -> None:
    verify_response(signed_headers(b""), b"", wechat_trust(), now=NOW)
    with pytest.raises(SignatureError):
        verify_response(signed_headers(b""), b"{}", wechat_trust(), now=NOW)


def _without(name: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in signed_headers().items() if k != name]


def _doubled(name: str) -> list[tuple[str, str]]:
    items = list(signed_headers().items())
    return [*items, (name.lower(), dict(items)[name])]


def _with(name: str, value: str) -> dict[str, str]:
    return {**signed_headers(), name: value}


HOSTILE_RESPONSES: list[tuple[str, object, bytes, type[Exception]]] = [
    ("missing timestamp", _without("Wechatpay-Timestamp"), BODY, MalformedMessageError),
    ("missing nonce", _without("Wechatpay-Nonce"), BODY, MalformedMessageError),
    ("missing signature", _without("Wechatpay-Signature"), BODY, MalformedMessageError),
    ("missing serial", _without("Wechatpay-Serial"), BODY, MalformedMessageError),
    ("duplicated timestamp", _doubled("Wechatpay-Timestamp"), BODY, MalformedMessageError),
    ("duplicated signature", _doubled("Wechatpay-Signature"), BODY, MalformedMessageError),
    ("duplicated serial", _doubled("Wechatpay-Serial"), BODY, MalformedMessageError),
    ("stale timestamp", signed_headers(ts=NOW - 300), BODY, StaleMessageError),
    ("future timestamp", signed_headers(ts=NOW + 300), BODY, StaleMessageError),
    ("garbage timestamp", _with("Wechatpay-Timestamp", "12a"), BODY, MalformedMessageError),
    ("unknown public key id", _with("Wechatpay-Serial", "PUB_KEY_ID_0999"), BODY, UnknownKeyError),
    ("unknown serial", _with("Wechatpay-Serial", "AB" * 20), BODY, UnknownKeyError),
    ("tampered body", signed_headers(), BODY.replace(b"abc", b"abd"), SignatureError),
    ("probe", _with("Wechatpay-Signature", "WECHATPAY/SIGNTEST/abc=="), BODY, SignatureError),
    ("not base64", _with("Wechatpay-Signature", "###"), BODY, SignatureError),
    (
        "other type",
        _with("Wechatpay-Signature-Type", "WECHATPAY2-SM2-WITH-SM3"),
        BODY,
        SignatureError,
    ),
]


@pytest.mark.parametrize(
    ("headers", "body", "error"),
    [case[1:] for case in HOSTILE_RESPONSES],
    ids=[case[0] for case in HOSTILE_RESPONSES],
)
def test_hostile_responses(headers: object, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        verify_response(headers, body, wechat_trust(), now=NOW)  # type: ignore[arg-type]
    assert type(info.value) is error


def test_window_edges_are_inside() -> None:
    verify_response(signed_headers(ts=NOW - 299), BODY, wechat_trust(), now=NOW)
    verify_response(signed_headers(ts=NOW + 299), BODY, wechat_trust(), now=NOW)


def test_read_signed_headers_from_httpx() -> None:
    import httpx

    headers = httpx.Headers([*signed_headers().items(), ("wechatpay-nonce", "x")])
    with pytest.raises(MalformedMessageError):
        read_signed_headers(headers)
