"""The shortcuts taken on the verify / notify hot path keep every check (see
docs/benchmarks.md): one-pass header reading from a plain dict, bulk field reads, exact-serial
lookup before normalising, strict base64 for signatures and GCM ciphertexts."""

from __future__ import annotations

import pytest

from scanpay.errors import (
    DecryptionError,
    MalformedMessageError,
    SignatureError,
    UnknownKeyError,
)
from scanpay.wechat.keys import TrustStore
from scanpay.wechat.secret import Secret
from scanpay.wechat.v3.aead import api_v3_cipher, encrypt_resource, gcm_decrypt
from scanpay.wechat.v3.jsonbody import parse_json, texts
from scanpay.wechat.v3.sign import SCHEME
from scanpay.wechat.v3.verify import read_signed_headers, sign_response, verify_response
from tests.wechat.v3.factories import API_V3_KEY, NOW, PUBLIC_KEY_ID, certificate, rsa_key

BODY = b'{"code_url":"weixin://wxpay/bizpayurl?pr=abc"}'


def _headers() -> dict[str, str]:
    return sign_response(
        BODY, serial=PUBLIC_KEY_ID, private_key=rsa_key("wechat"), timestamp=NOW, nonce="n0nce"
    )


def _trust() -> TrustStore:
    return TrustStore(public_keys=[(PUBLIC_KEY_ID, rsa_key("wechat").public_key())])


def test_dict_with_two_spellings_of_one_header_is_rejected() -> None:
    headers = _headers()
    headers["wechatpay-serial"] = PUBLIC_KEY_ID  # a second spelling of Wechatpay-Serial
    with pytest.raises(MalformedMessageError, match="Wechatpay-Serial appears more than once"):
        read_signed_headers(headers)


def test_other_headers_may_repeat_and_type_defaults() -> None:
    headers = _headers()
    del headers["Wechatpay-Signature-Type"]
    pairs = [*headers.items(), ("Set-Cookie", "a=1"), ("set-cookie", "b=2")]
    signed = read_signed_headers(pairs)
    assert signed.signature_type == SCHEME
    assert signed.as_dict()["Wechatpay-Serial"] == PUBLIC_KEY_ID


@pytest.mark.parametrize("name", ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial"])
def test_empty_required_header_counts_as_missing(name: str) -> None:
    headers = {**_headers(), name: ""}
    with pytest.raises(MalformedMessageError, match=f"{name} is missing"):
        read_signed_headers(headers)


@pytest.mark.parametrize(
    "signature",
    ["é" * 344, "YQ==YQ==", "Y Q==", "YQ"],  # non-ASCII, data after padding, space, no padding
)
def test_signature_base64_is_strict(signature: str) -> None:
    headers = {**_headers(), "Wechatpay-Signature": signature}
    with pytest.raises(SignatureError, match="not base64"):
        verify_response(headers, BODY, _trust(), now=NOW)


def test_lower_case_certificate_serial_still_found() -> None:
    key = rsa_key("platform")
    trust = TrustStore(certificates=[certificate(key, 0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1)])
    serial = "5157f09efdc096de15ebe81a47057a7232f1b8e1"
    headers = sign_response(BODY, serial=serial, private_key=key, timestamp=NOW, nonce="n")
    assert verify_response(headers, BODY, trust, now=NOW).serial == serial
    with pytest.raises(UnknownKeyError):
        trust.lookup("PUB_KEY_ID_0000")


@pytest.mark.parametrize("damage", ["A", "!", "é", " "])
def test_gcm_ciphertext_base64_is_strict(damage: str) -> None:
    cipher = api_v3_cipher(Secret(API_V3_KEY))
    sealed = encrypt_resource(b"{}", cipher, nonce="abcdefghijkl").ciphertext
    assert gcm_decrypt(cipher, "abcdefghijkl", sealed, "") == b"{}"
    with pytest.raises(DecryptionError, match="not base64"):
        gcm_decrypt(cipher, "abcdefghijkl", sealed + damage, "")


def test_texts_reads_in_order_and_names_the_bad_field() -> None:
    data = parse_json(b'{"a":"1","b":"","c":2}')
    assert texts(data, ("a",)) == ["1"]
    assert texts(data, ("b", "missing"), required=False) == ["", ""]
    with pytest.raises(MalformedMessageError, match="b must be"):
        texts(data, ("a", "b"))
    with pytest.raises(MalformedMessageError, match="c must be"):
        texts(data, ("c",), required=False)


def test_cached_decoder_still_rejects_duplicates_and_constants() -> None:
    with pytest.raises(MalformedMessageError, match="duplicate JSON key"):
        parse_json(b'{"a":{"b":1,"b":2}}')
    with pytest.raises(MalformedMessageError):
        parse_json(b'{"a":NaN}')
    assert parse_json(b'{"a":{"b":1}}') == {"a": {"b": 1}}
