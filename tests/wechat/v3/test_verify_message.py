"""``verify_message`` checks SHA256withRSA by "encode and compare" (recover the padded
DigestInfo, compare it byte for byte): it must accept exactly what cryptography's own
``RSAPublicKey.verify(..., PKCS1v15(), SHA256())`` accepts."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from scanpay.errors import SignatureError
from scanpay.wechat.v3.sign import sign_message, verify_message
from tests.wechat.v3.factories import rsa_key

PKCS1 = padding.PKCS1v15()


def _library_accepts(key: RSAPublicKey, message: bytes, raw: bytes) -> bool:
    try:
        key.verify(raw, message, PKCS1, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _ours_accepts(key: RSAPublicKey, message: bytes, raw: bytes) -> bool:
    try:
        verify_message(key, message, base64.b64encode(raw).decode())
    except SignatureError:
        return False
    return True


def test_valid_signature_accepted() -> None:
    key = rsa_key("wechat")
    message = b"1554208460\nnonce\n{}\n"
    verify_message(key.public_key(), message, sign_message(key, message))


@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA384(), hashes.SHA512()])
def test_other_digest_refused(algorithm: hashes.HashAlgorithm) -> None:
    """Same key and message, another hash: the recovered DigestInfo differs."""
    key = rsa_key("wechat")
    message = b"message"
    raw = key.sign(message, PKCS1, algorithm)
    assert not _ours_accepts(key.public_key(), message, raw)


def test_pss_signature_refused() -> None:
    key = rsa_key("wechat")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    raw = key.sign(b"message", pss, hashes.SHA256())
    assert not _ours_accepts(key.public_key(), b"message", raw)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00" * 256, b"\x01" * 256, b"\xff" * 256, b"\x00" * 257, b"\x07" * 255],
    ids=["empty", "zero", "ones", "above-modulus", "too-long", "too-short"],
)
def test_garbage_of_any_length_is_a_signature_error(raw: bytes) -> None:
    assert not _ours_accepts(rsa_key("wechat").public_key(), b"message", raw)


def test_signature_without_its_leading_zero_byte_refused() -> None:
    """A valid signature whose first byte is 0, sent one byte short: the same number, but
    cryptography's verify insists on the modulus length and so does scanpay."""
    key = rsa_key("wechat")
    for attempt in range(5000):  # about 1 in 256 signatures starts with a zero byte
        message = b"leading zero %d" % attempt
        raw = key.sign(message, PKCS1, hashes.SHA256())
        if raw[0] == 0:
            break
    else:  # pragma: no cover - probability about e**-19
        pytest.fail("no signature with a leading zero byte found")
    assert _ours_accepts(key.public_key(), message, raw)
    assert not _library_accepts(key.public_key(), message, raw[1:])
    assert not _ours_accepts(key.public_key(), message, raw[1:])
    assert not _ours_accepts(key.public_key(), message, b"\x00" + raw)


def test_other_key_refused() -> None:
    message = b"message"
    raw = rsa_key("wechat").sign(message, PKCS1, hashes.SHA256())
    assert not _ours_accepts(rsa_key("merchant").public_key(), message, raw)


@settings(max_examples=60, deadline=None)
@given(
    message=st.binary(max_size=200),
    position=st.integers(min_value=0, max_value=255),
    flip=st.integers(min_value=0, max_value=255),
    damage_message=st.booleans(),
)
def test_same_verdict_as_the_library(
    message: bytes, position: int, flip: int, damage_message: bool
) -> None:
    key = rsa_key("wechat")
    public = key.public_key()
    raw = key.sign(message, PKCS1, hashes.SHA256())
    assert _ours_accepts(public, message, raw)
    assert _library_accepts(public, message, raw)
    if damage_message:
        checked, signature = message + bytes([flip]), raw
    else:
        changed = bytearray(raw)
        changed[position] ^= flip
        checked, signature = message, bytes(changed)
    assert _ours_accepts(public, checked, signature) == _library_accepts(public, checked, signature)
