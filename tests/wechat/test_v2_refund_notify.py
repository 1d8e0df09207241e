"""v2 refund notification `req_info`: vectors 5.1.3, 5.4.2, wechatpy both ways, hostile input."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpy.crypto import RefundCrypto, WeChatRefundCrypto

from scanpay.errors import DecryptionError, MalformedMessageError
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import RefundState
from scanpay.wechat.v2.envelope import V2Merchant
from scanpay.wechat.v2.refund_notify import (
    RefundNotification,
    build_refund_notification,
    decrypt_refund_notification,
    decrypt_req_info,
    encrypt_req_info,
    req_info_key,
)
from scanpay.wechat.v2.refunds import RefundStatus
from scanpay.wechat.xmlcodec import dump_xml

KEY = Secret("192006250b4c09247ec02edce69f6a2d")
MERCHANT = V2Merchant(appid="wx2421b1c4370ec43b", mch_id="10000100", key=KEY)

# PROTOCOL.md 5.4.2 (derived): ciphertext of the 5.1.4 <root> document, one element per line.
DERIVED_REQ_INFO = (
    "4gS8kbcHysCW7bHqyEU0M4GTNkgJQP6/zKHbA/E3CvwLlNgCKUkGRy0OpONZjd4saggSnB6Fr7dHRYn6tvu8XDRU6t9I"
    "C3GuUKHs3SXmFKkm5cy3YR0oWIZFU4C5LV9LU7U3hwvUSZNx1QcFQXX9yZz68Wq8pwf/DeZ6iOXy/XRulylo75C7n0p3"
    "dMm/yJamZ44ir2iwWwEis3Tiif9Y6foLxrFA+fESQK1aH/OEZhIrJPIlnrtoxGJVJfoWAOYrC13a52BaR7CHKmNhAtw6"
    "0n+XBUPLx5VzwpHKf3zZB1EpCngiVGcxmEAy3I59wotsScP4iaUeObWqPs7RYdQCiFQ9oRo4/c6bUWocW6HfOJGyWXj3"
    "VNfZtjTp1J6R05bP/1PCNV9FIMlt+owfcjTPO4pmRx0SpuKPy7j80APUCyC4g/0FU2ppbw/jN3faXAOV/1+Vl5vrDWxg"
    "2hiWm9JCttJ5kAHD/9XB6hfM0BH4iwf/Z/FZO+ECvO2A9buqnpCeOYWsOZNN1Z2Ow9kfJXhiDs/N0UICa2lodyl44nBr"
    "bP3amju/Zm6yyyFr74jl2GUsGO3PBrqfP1mbX96WiG09BcjQp1PAw40kfw32o7LW8ZT7DakPEGf0Khhuy+xbdusziU/C"
    "ihrSEIUJP2qlK2/WrM3MtKE7qMqGBMDTG/n/BB1B82zfpNEh1py0CKTS+ezCKQp4IlRnMZhAMtyOfcKLbMEwOF1u3Tdf"
    "Nh+GSXPbEdydvKTcrMddQ5bbUosAT0d+dcPSPlM8Ckq6OPWJfyaySg8x1PM39psr2UqhJGFQ/kcDLzCYt1gVX+qjOdMC"
    "0v0IBG+YszRCIvJkNGues9wip94bkBWQeHdtuES+XZS9wIR0jwIA5G+mJJD3tRW/JpCXeIVgW84XStyaniaekKdo/Q6l"
    "kmNwtztmzB0Ub6ct/rQPMdTzN/abK9lKoSRhUP5Hq3yjxpWFegmV3TtECOaAtSj8cubVTONJL2m2vzF7RpOCXbPq7TuR"
    "yVqYF1fTBJH50z8YV7B5zZ5f1JU2tCMvRaIe1jZ0yyZLytG/dONZ+ee7rjV3lKvcHiHEASz1EtvM"
)
DERIVED_SHA256 = "b24dedce05d6f34cb21b73bf2d4fd18e0765f9529d45168bfa2887aa16a3fc3e"


def envelope(req_info: str, *, appid: str = MERCHANT.appid, mch_id: str = MERCHANT.mch_id) -> bytes:
    return dump_xml(
        {
            "return_code": "SUCCESS",
            "appid": appid,
            "mch_id": mch_id,
            "nonce_str": "0f7f2a5c",
            "req_info": req_info,
        }
    )


def test_aes_ecb_primitive_vector_5_1_3() -> None:
    # wechatpay-php AesEcbTest: "hello", ASCII key, PKCS#7 -> pZwJZBLuy3mDACEQT4YTBw==
    key = b"0123456789abcdef0123456789abcdef"
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    data = encryptor.update(b"hello" + bytes([11]) * 11) + encryptor.finalize()
    assert base64.b64encode(data) == b"pZwJZBLuy3mDACEQT4YTBw=="


def test_key_is_lower_hex_md5_of_api_key() -> None:
    assert req_info_key(KEY) == b"d96eb16afdd491fa1e705096edbc2205"


def test_derived_vector_5_4_2_decrypts() -> None:
    plaintext = decrypt_req_info(DERIVED_REQ_INFO, KEY)
    assert len(plaintext) == 812
    assert hashlib.sha256(plaintext).hexdigest() == DERIVED_SHA256
    # our encryption is the same standard PKCS#7 / 16-byte construction
    assert encrypt_req_info(plaintext, KEY) == DERIVED_REQ_INFO


def test_derived_vector_parses_to_the_5_1_4_fields() -> None:
    note = decrypt_refund_notification(envelope(DERIVED_REQ_INFO), MERCHANT)
    assert note == RefundNotification(
        appid=MERCHANT.appid,
        mch_id=MERCHANT.mch_id,
        transaction_id="4200000215201811190261405420",
        out_trade_no="71106718111915575302817",
        refund_id="50000408942018111907145868882",
        out_refund_no="131811191610442717309",
        total_fee=3960,
        refund_fee=3960,
        refund_status=RefundStatus.SUCCESS,
        settlement_total_fee=3960,
        settlement_refund_fee=3960,
        success_time="2018-11-19 16:24:13",
        refund_recv_accout="支付用户零钱",
        refund_account="REFUND_SOURCE_RECHARGE_FUNDS",
        refund_request_source="API",
    )
    assert note.refund_status.state is RefundState.SUCCESS


NOTE = RefundNotification(
    appid=MERCHANT.appid,
    mch_id=MERCHANT.mch_id,
    transaction_id="4200000215201811190261405420",
    out_trade_no="scanpay20240101x1",
    refund_id="50000408942018111907145868882",
    out_refund_no="R20240101x1",
    total_fee=100,
    refund_fee=40,
    refund_status=RefundStatus.CHANGE,
    refund_recv_accout="招商银行信用卡0403",
)


def test_build_then_decrypt_round_trip() -> None:
    body = build_refund_notification(NOTE, KEY, nonce="n1")
    assert b"<sign>" not in body
    assert decrypt_refund_notification(body, MERCHANT) == NOTE


def test_wechatpy_decrypts_ours() -> None:
    body = build_refund_notification(NOTE, KEY, nonce="n1")
    theirs = WeChatRefundCrypto(KEY.reveal()).decrypt_message(body, NOTE.appid, NOTE.mch_id)
    assert theirs["out_refund_no"] == NOTE.out_refund_no
    assert theirs["refund_fee"] == "40"
    assert theirs["refund_status"] == "CHANGE"


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_wechatpy_and_scanpay_agree_on_random_plaintexts(plaintext: bytes) -> None:
    ours = encrypt_req_info(plaintext, KEY)
    assert RefundCrypto(req_info_key(KEY)).decrypt(ours) == plaintext
    # wechatpy pads to 32-byte blocks (PROTOCOL.md 2.11): we still decrypt it
    theirs = RefundCrypto(req_info_key(KEY)).encrypt(plaintext).decode()
    assert decrypt_req_info(theirs, KEY) == plaintext


def test_wechatpy_encrypted_notification_decrypts() -> None:
    root = dump_xml(NOTE.to_fields(), root="root").decode()
    req_info = RefundCrypto(req_info_key(KEY)).encrypt(root).decode()
    assert decrypt_refund_notification(envelope(req_info), MERCHANT) == NOTE


def test_wrong_key_is_a_decryption_error() -> None:
    body = build_refund_notification(NOTE, KEY, nonce="n1")
    other = V2Merchant(appid=MERCHANT.appid, mch_id=MERCHANT.mch_id, key=Secret("a" * 32))
    with pytest.raises(DecryptionError):
        decrypt_refund_notification(body, other)


@pytest.mark.parametrize(
    "req_info",
    [
        "not base64 at all!",
        "aGVsbG8=",  # valid base64, 5 bytes: not whole blocks
        base64.b64encode(bytes(16)).decode(),  # one block that does not unpad
        "",
        "Zm9v\x00",
        "é" * 8,
        "A" * 10_000,
    ],
)
def test_bad_req_info_is_a_decryption_error(req_info: str) -> None:
    with pytest.raises(DecryptionError):
        decrypt_req_info(req_info, KEY)


def test_bad_padding_value_is_refused() -> None:
    key = req_info_key(KEY)
    for block in (b"x" * 15 + bytes([0]), b"x" * 15 + bytes([33]), b"x" * 13 + bytes([3, 3, 4])):
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        data = encryptor.update(block) + encryptor.finalize()
        with pytest.raises(DecryptionError):
            decrypt_req_info(base64.b64encode(data).decode(), KEY)


def test_envelope_for_another_merchant_is_refused_before_decrypting() -> None:
    with pytest.raises(MalformedMessageError):
        decrypt_refund_notification(envelope("garbage", appid="wx_other"), MERCHANT)
    with pytest.raises(MalformedMessageError):
        decrypt_refund_notification(envelope("garbage", mch_id="999"), MERCHANT)


def test_fail_envelope_and_missing_req_info_are_malformed() -> None:
    with pytest.raises(MalformedMessageError):
        decrypt_refund_notification(dump_xml({"return_code": "FAIL", "return_msg": "x"}), MERCHANT)
    with pytest.raises(MalformedMessageError):
        decrypt_refund_notification(envelope(""), MERCHANT)


def test_decrypted_root_must_be_well_formed() -> None:
    bad_root = encrypt_req_info(b"<root><refund_fee>1</refund_fee>", KEY)
    with pytest.raises(MalformedMessageError):
        decrypt_refund_notification(envelope(bad_root), MERCHANT)
    entity = encrypt_req_info(
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><root>&x;</root>', KEY
    )
    with pytest.raises(MalformedMessageError):
        decrypt_refund_notification(envelope(entity), MERCHANT)


def test_unknown_status_is_malformed() -> None:
    fields = {**NOTE.to_fields(), "refund_status": "WEIRD"}
    req_info = encrypt_req_info(dump_xml(fields, root="root"), KEY)
    with pytest.raises(MalformedMessageError):
        decrypt_refund_notification(envelope(req_info), MERCHANT)


def test_random_bytes_after_unpadding_are_a_decryption_error() -> None:
    with pytest.raises(DecryptionError):
        decrypt_refund_notification(envelope(encrypt_req_info(b"\x93garbage", KEY)), MERCHANT)
