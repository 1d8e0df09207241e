"""API v2 refund result notification: ``req_info`` (PROTOCOL.md 2.11), both directions.

The envelope ``<xml>`` carries ``return_code``, ``appid``, ``mch_id``, ``nonce_str`` and
``req_info`` and **no sign**: authenticity comes from the encryption. ``req_info`` is
``base64(AES-256-ECB(key, PKCS#7(<root>...</root>)))`` where the AES key is the 32 ASCII
characters of ``lower(hex(md5(API v2 key)))``.

Decryption accepts PKCS#7 padding of 1 to 32 bytes (all pad bytes equal): WeChat pads to
16-byte blocks, wechatpy's encrypt helper to 32-byte blocks. Encryption pads to 16 bytes.
The envelope's ``appid`` / ``mch_id`` are checked before anything is decrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from scanpay.errors import DecryptionError, MalformedMessageError
from scanpay.wechat.secret import Secret
from scanpay.wechat.v2.envelope import V2Merchant
from scanpay.wechat.v2.refunds import RefundStatus, fen_field, optional_fen, refund_status, require
from scanpay.wechat.xmlcodec import dump_xml, parse_xml

_BLOCK = 16
_MAX_PAD = 32
MAX_REQ_INFO_CHARS = 8192  # documented String(1024); allow headroom, refuse the absurd


def req_info_key(api_key: Secret) -> bytes:
    """The AES-256 key: the lowercase hex MD5 of the API v2 key, as 32 ASCII bytes."""
    digest = hashlib.md5(api_key.reveal().encode("utf-8"), usedforsecurity=False)
    return digest.hexdigest().encode("ascii")


def encrypt_req_info(plaintext: bytes, api_key: Secret) -> str:
    """AES-256-ECB with PKCS#7 over 16-byte blocks, base64 (WeChat's and the simulator's side)."""
    pad = _BLOCK - len(plaintext) % _BLOCK
    encryptor = Cipher(algorithms.AES(req_info_key(api_key)), modes.ECB()).encryptor()
    data = encryptor.update(plaintext + bytes([pad]) * pad) + encryptor.finalize()
    return base64.b64encode(data).decode("ascii")


def decrypt_req_info(req_info: str, api_key: Secret) -> bytes:
    """Undo :func:`encrypt_req_info`; :class:`DecryptionError` on bad base64, length or padding."""
    if len(req_info) > MAX_REQ_INFO_CHARS:
        raise DecryptionError("req_info too long")
    try:
        data = base64.b64decode(req_info.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DecryptionError("req_info is not base64") from None
    if not data or len(data) % _BLOCK:
        raise DecryptionError("req_info is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(req_info_key(api_key)), modes.ECB()).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    pad = padded[-1]
    # A wrong key yields random bytes: the padding check is what catches it.
    if not 1 <= pad <= min(_MAX_PAD, len(padded)) or not hmac.compare_digest(
        padded[-pad:], bytes([pad]) * pad
    ):
        raise DecryptionError("req_info padding is invalid (wrong key?)")
    return padded[:-pad]


@dataclass(frozen=True)
class RefundNotification:
    """The decrypted content of a refund notification (``<root>``), typed."""

    appid: str
    mch_id: str
    transaction_id: str
    out_trade_no: str
    refund_id: str
    out_refund_no: str
    total_fee: int
    refund_fee: int
    refund_status: RefundStatus
    settlement_total_fee: int | None = None
    settlement_refund_fee: int | None = None
    success_time: str = ""  # yyyy-MM-dd HH:mm:ss, Beijing (only when SUCCESS)
    refund_recv_accout: str = ""  # sic: WeChat's spelling
    refund_account: str = ""
    refund_request_source: str = ""

    def to_fields(self) -> dict[str, str | int]:
        """The ``<root>`` fields (without appid / mch_id, which live on the envelope)."""
        fields: dict[str, str | int] = {
            "transaction_id": self.transaction_id,
            "out_trade_no": self.out_trade_no,
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "total_fee": self.total_fee,
            "refund_fee": self.refund_fee,
            "refund_status": self.refund_status.value,
        }
        optional: dict[str, str | int | None] = {
            "settlement_total_fee": self.settlement_total_fee,
            "settlement_refund_fee": self.settlement_refund_fee,
            "success_time": self.success_time,
            "refund_recv_accout": self.refund_recv_accout,
            "refund_account": self.refund_account,
            "refund_request_source": self.refund_request_source,
        }
        fields.update({k: v for k, v in optional.items() if v is not None and v != ""})
        return fields


def parse_refund_info(root: Mapping[str, str], *, appid: str, mch_id: str) -> RefundNotification:
    """Type the decrypted ``<root>`` fields; ``appid``/``mch_id`` come from the envelope."""
    return RefundNotification(
        appid=appid,
        mch_id=mch_id,
        transaction_id=require(root, "transaction_id"),
        out_trade_no=require(root, "out_trade_no"),
        refund_id=require(root, "refund_id"),
        out_refund_no=require(root, "out_refund_no"),
        total_fee=fen_field(root, "total_fee"),
        refund_fee=fen_field(root, "refund_fee"),
        refund_status=refund_status(require(root, "refund_status")),
        settlement_total_fee=optional_fen(root, "settlement_total_fee"),
        settlement_refund_fee=optional_fen(root, "settlement_refund_fee"),
        success_time=root.get("success_time", ""),
        refund_recv_accout=root.get("refund_recv_accout", ""),
        refund_account=root.get("refund_account", ""),
        refund_request_source=root.get("refund_request_source", ""),
    )


def decrypt_refund_notification(body: bytes, merchant: V2Merchant) -> RefundNotification:
    """Check the envelope is ours, decrypt ``req_info`` and type it.

    :class:`MalformedMessageError` for a bad or foreign envelope, :class:`DecryptionError`
    when ``req_info`` does not decrypt with this merchant's key.
    """
    envelope = parse_xml(body)
    if envelope.get("return_code") != "SUCCESS":
        raise MalformedMessageError("refund notification return_code is not SUCCESS")
    if envelope.get("appid") != merchant.appid or envelope.get("mch_id") != merchant.mch_id:
        raise MalformedMessageError("refund notification names another merchant")
    plaintext = decrypt_req_info(require(envelope, "req_info"), merchant.key)
    if not plaintext.startswith(b"<"):
        # A wrong key that happens to end in valid-looking padding gives random bytes.
        raise DecryptionError("req_info did not decrypt to XML (wrong key?)")
    root = parse_xml(plaintext, root="root")
    return parse_refund_info(root, appid=merchant.appid, mch_id=merchant.mch_id)


def build_refund_notification(
    notification: RefundNotification, api_key: Secret, *, nonce: str
) -> bytes:
    """The simulator's side: the envelope with ``req_info`` encrypted under ``api_key``."""
    plaintext = dump_xml(notification.to_fields(), root="root")
    return dump_xml(
        {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": notification.appid,
            "mch_id": notification.mch_id,
            "nonce_str": nonce,
            "req_info": encrypt_req_info(plaintext, api_key),
        }
    )
