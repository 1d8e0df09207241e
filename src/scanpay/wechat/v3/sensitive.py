"""Sensitive-field encryption of API v3: RSAES-OAEP, SHA-1, MGF1-SHA-1, no label; base64.

Requests are encrypted with the WeChat Pay public key / platform certificate key (and carry
``Wechatpay-Serial`` naming it); responses are decrypted with the merchant private key.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from scanpay.errors import DecryptionError

_OAEP: Final = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def encrypt_sensitive(plaintext: str, public_key: RSAPublicKey) -> str:
    return base64.b64encode(public_key.encrypt(plaintext.encode("utf-8"), _OAEP)).decode("ascii")


def decrypt_sensitive(ciphertext: str, private_key: RSAPrivateKey) -> str:
    try:
        raw = base64.b64decode(ciphertext.encode("ascii"), validate=True)
        return private_key.decrypt(raw, _OAEP).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise DecryptionError("sensitive field cannot be decrypted") from None
