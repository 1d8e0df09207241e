"""``GET /v3/certificates``: encrypted platform certificates (PROTOCOL.md 3.4).

Each entry's ``encrypt_certificate`` is an AEAD_AES_256_GCM resource (AAD ``certificate``)
whose plaintext is the PEM certificate. :func:`parse_certificates` decrypts every entry and
checks that the certificate's own serial equals the declared ``serial_no``;
:func:`build_certificates` is WeChat's side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scanpay.errors import ConfigurationError, MalformedMessageError
from scanpay.wechat.fields import format_v3_time
from scanpay.wechat.keys import certificate_serial, load_certificate, normalise_serial
from scanpay.wechat.secret import Secret
from scanpay.wechat.v3.aead import EncryptedResource, decrypt_resource, encrypt_resource
from scanpay.wechat.v3.jsonbody import dump_json, obj, parse_json, text
from scanpay.wechat.v3.request import ApiRequest

CERTIFICATES_PATH: Final = "/v3/certificates"
ASSOCIATED_DATA: Final = "certificate"


def certificates_request() -> ApiRequest:
    return ApiRequest("GET", CERTIFICATES_PATH, idempotent=True)


def parse_certificates(body: bytes, api_v3_key: Secret | AESGCM) -> list[x509.Certificate]:
    """Decrypt every platform certificate of a /v3/certificates answer."""
    data = parse_json(body)
    entries = data.get("data")
    if not isinstance(entries, list) or not entries:
        raise MalformedMessageError("certificates answer has no data list")
    result: list[x509.Certificate] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise MalformedMessageError("certificate entry must be an object")
        resource = EncryptedResource.from_json(obj(entry, "encrypt_certificate"))
        pem = decrypt_resource(resource, api_v3_key)
        try:
            cert = load_certificate(pem)
        except ConfigurationError:
            raise MalformedMessageError("decrypted certificate is not PEM") from None
        if certificate_serial(cert) != normalise_serial(text(entry, "serial_no")):
            raise MalformedMessageError("certificate serial does not match serial_no")
        result.append(cert)
    return result


def build_certificates(
    certificates: Sequence[x509.Certificate], api_v3_key: Secret | AESGCM, *, nonces: Sequence[str]
) -> bytes:
    """WeChat's side: the answer body, one nonce (12 chars) per certificate."""
    if len(nonces) != len(certificates):
        raise ValueError("one nonce per certificate")
    data: list[object] = []
    for cert, nonce in zip(certificates, nonces, strict=True):
        pem = cert.public_bytes(serialization.Encoding.PEM)
        encrypted = encrypt_resource(pem, api_v3_key, nonce=nonce, associated_data=ASSOCIATED_DATA)
        data.append(
            {
                "serial_no": certificate_serial(cert),
                "effective_time": format_v3_time(cert.not_valid_before_utc),
                "expire_time": format_v3_time(cert.not_valid_after_utc),
                "encrypt_certificate": encrypted.to_json(),
            }
        )
    return dump_json({"data": data})
