"""AEAD_AES_256_GCM resources of API v3 (notifications, /v3/certificates; PROTOCOL.md 3.10).

key = the 32-character API v3 key as ASCII bytes; IV = the 12-character ``nonce`` as UTF-8;
AAD = ``associated_data`` as UTF-8 (may be empty); ``ciphertext`` = base64(encrypted bytes ||
16-byte tag). A wrong key, a tampered ciphertext or tag, or bad base64 is a
:class:`DecryptionError`; an ``algorithm`` other than ``AEAD_AES_256_GCM`` is a
:class:`MalformedMessageError` (checked before any decryption).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Final, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scanpay.errors import ConfigurationError, DecryptionError, MalformedMessageError
from scanpay.wechat.secret import Secret
from scanpay.wechat.v3.jsonbody import texts

ALGORITHM: Final = "AEAD_AES_256_GCM"
NONCE_LENGTH: Final = 12
_REQUIRED_TEXT: Final = ("ciphertext", "nonce", "algorithm")
_OPTIONAL_TEXT: Final = ("associated_data", "original_type")


def api_v3_cipher(api_v3_key: Secret) -> AESGCM:
    """An AES-256-GCM cipher for the API v3 key; the key must be 32 ASCII characters."""
    raw = api_v3_key.reveal().encode("utf-8")
    if len(raw) != 32:
        raise ConfigurationError("the API v3 key must be exactly 32 characters")
    return AESGCM(raw)


def _cipher(key: Secret | AESGCM) -> AESGCM:
    return key if isinstance(key, AESGCM) else api_v3_cipher(key)


def gcm_encrypt(cipher: AESGCM, nonce: str, plaintext: bytes, associated_data: str) -> str:
    """Primitive: base64(AES-GCM(plaintext) || tag). Accepts any AES key size."""
    nonce_bytes = nonce.encode("utf-8")
    if len(nonce_bytes) != NONCE_LENGTH:
        raise MalformedMessageError("GCM nonce must be 12 bytes")
    sealed = cipher.encrypt(nonce_bytes, plaintext, associated_data.encode("utf-8"))
    return base64.b64encode(sealed).decode("ascii")


def gcm_decrypt(cipher: AESGCM, nonce: str, ciphertext: str, associated_data: str) -> bytes:
    """Primitive: reverse of :func:`gcm_encrypt`; any failure is a :class:`DecryptionError`."""
    nonce_bytes = nonce.encode("utf-8")
    if len(nonce_bytes) != NONCE_LENGTH:
        raise DecryptionError("GCM nonce must be 12 bytes")
    try:  # strict: alphabet, padding, nothing after it. Given bytes rather than the str
        # (~0.2 µs less for a notification); a non-ASCII character becomes bytes outside the
        # alphabet, a lone surrogate a UnicodeEncodeError: both ValueErrors, both refused
        sealed = binascii.a2b_base64(ciphertext.encode(), strict_mode=True)
    except ValueError:
        raise DecryptionError("ciphertext is not base64") from None
    if len(sealed) < 16:
        raise DecryptionError("ciphertext shorter than the GCM tag")
    try:
        return cipher.decrypt(nonce_bytes, sealed, associated_data.encode("utf-8"))
    except InvalidTag:
        raise DecryptionError("GCM tag mismatch (wrong API v3 key or tampered data)") from None


class EncryptedResource(NamedTuple):
    """A v3 ``resource`` / ``encrypt_certificate`` object (immutable; a NamedTuple because
    one is built per notification, see :mod:`scanpay.wechat.v3.notify`)."""

    ciphertext: str
    nonce: str
    associated_data: str = ""
    algorithm: str = ALGORITHM
    original_type: str = ""

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> EncryptedResource:
        ciphertext, nonce, algorithm = texts(value, _REQUIRED_TEXT)
        associated_data, original_type = texts(value, _OPTIONAL_TEXT, required=False)
        return cls(ciphertext, nonce, associated_data, algorithm, original_type)

    def to_json(self) -> dict[str, object]:
        result: dict[str, object] = {}
        if self.original_type:
            result["original_type"] = self.original_type
        result.update(
            algorithm=self.algorithm,
            ciphertext=self.ciphertext,
            associated_data=self.associated_data,
            nonce=self.nonce,
        )
        return result


def encrypt_resource(
    plaintext: bytes,
    api_v3_key: Secret | AESGCM,
    *,
    nonce: str,
    associated_data: str = "",
    original_type: str = "",
) -> EncryptedResource:
    """WeChat's side: seal ``plaintext`` as a resource object."""
    ciphertext = gcm_encrypt(_cipher(api_v3_key), nonce, plaintext, associated_data)
    return EncryptedResource(ciphertext, nonce, associated_data, ALGORITHM, original_type)


def decrypt_resource(resource: EncryptedResource, api_v3_key: Secret | AESGCM) -> bytes:
    """Open a resource object: algorithm first, then AES-256-GCM."""
    if resource.algorithm != ALGORITHM:
        raise MalformedMessageError("resource algorithm must be " + ALGORITHM)
    return gcm_decrypt(
        _cipher(api_v3_key), resource.nonce, resource.ciphertext, resource.associated_data
    )
