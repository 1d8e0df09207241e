"""The one exception tree of scanpay.

::

    ScanpayError
    ├── ConfigurationError          settings or key material unusable
    ├── ProtocolError               the bytes cannot be trusted or understood; never retried
    │   ├── MalformedMessageError   not XML / JSON, wrong shape, duplicate fields, entities
    │   ├── SignatureError          signature missing or does not match
    │   │   ├── UnknownKeyError     serial / public-key id that we do not trust
    │   │   └── StaleMessageError   timestamp outside the 5-minute window
    │   └── DecryptionError         AES-GCM tag / AES-ECB padding / wrong key
    ├── TransportError              no usable answer (connect, timeout); retry with same ids
    ├── ApiError                    WeChat Pay answered with an error code
    │   └── RetryableApiError       SYSTEMERROR / 5xx / FREQUENCY_LIMITED
    └── DomainError                 the shop's own rules
        ├── NotFoundError
        ├── InvalidTransitionError
        ├── ConflictError           idempotency key reused with another body
        └── ValidationError         a request value breaks a rule

``str()`` of an :class:`ApiError` starts with the WeChat request id when there is one.
No error message ever contains a key, a signature input or a decrypted payload.
"""

from __future__ import annotations


class ScanpayError(Exception):
    """Root of every error scanpay raises on purpose."""

    code: str = "SCANPAY_ERROR"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigurationError(ScanpayError):
    code = "CONFIGURATION_ERROR"


class ProtocolError(ScanpayError):
    """Input that cannot be trusted or parsed. Retrying the same bytes cannot help."""

    code = "PROTOCOL_ERROR"


class MalformedMessageError(ProtocolError):
    code = "MALFORMED"


class SignatureError(ProtocolError):
    code = "SIGNATURE_INVALID"


class MissingSignatureError(SignatureError):
    """The message carries no signature at all (issue 9: one outcome, ``unsigned``)."""

    code = "SIGNATURE_MISSING"


class UnknownKeyError(SignatureError):
    code = "UNKNOWN_SERIAL"


class StaleMessageError(SignatureError):
    code = "STALE_TIMESTAMP"


class DecryptionError(ProtocolError):
    code = "DECRYPTION_FAILED"


class TransportError(ScanpayError):
    """No usable answer came back; safe to retry with the same identifiers."""

    code = "TRANSPORT_ERROR"


class ApiError(ScanpayError):
    """WeChat Pay answered, with an error code."""

    code = "API_ERROR"

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.request_id = request_id
        self.http_status = http_status

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}" if self.message else self.code
        return f"[{self.request_id}] {text}" if self.request_id else text


class RetryableApiError(ApiError):
    """An API error WeChat documents as transient (retry with the same parameters)."""

    code = "SYSTEMERROR"


class DomainError(ScanpayError):
    code = "DOMAIN_ERROR"


class NotFoundError(DomainError):
    code = "NOT_FOUND"


class InvalidTransitionError(DomainError):
    code = "INVALID_TRANSITION"


class ConflictError(DomainError):
    code = "CONFLICT"


class ValidationError(DomainError):
    code = "INVALID_REQUEST"
