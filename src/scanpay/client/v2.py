"""Async client for WeChat Pay API v2 (XML): Native orders, refunds, bills, notifications.

The only place v2 bytes leave the process. Each method builds a request with the pure core
(:mod:`scanpay.wechat.v2`), sends it, and hands the answer back to the core to verify and
parse. ``secapi/`` calls (refund) go through a second HTTP client that presents the merchant's
certificate (mutual TLS); with an injected ``transport`` both clients share it and the
certificate is not used.

Retries follow :mod:`scanpay.client.retry` (shared with v3): a connection that failed before
the request was sent is always repeated; ``SYSTEMERROR`` / ``BIZERR_NEED_RETRY`` /
``FREQUENCY_LIMITED``, HTTP 5xx and transport failures after sending only on calls that are
idempotent by ``out_trade_no`` / ``out_refund_no`` (every v2 call here; ``call(...,
idempotent=False)`` opts out). The very same bytes are sent again. Keys never appear in
reprs, logs or errors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random as _random
import secrets
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, TypeVar

import httpx
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)

from scanpay.client.retry import NO_RETRY, NOT_SENT, RetryPolicy, call_with_retry
from scanpay.errors import ConfigurationError, TransportError
from scanpay.wechat.bill import HEAD_BYTES, Bill, BillSink
from scanpay.wechat.secret import Secret
from scanpay.wechat.v2.bills import (
    DOWNLOAD_BILL_PATH,
    DownloadBill,
    parse_bill_response,
    read_bill_bytes,
)
from scanpay.wechat.v2.envelope import V2Merchant, decode_response, encode_request
from scanpay.wechat.v2.notify import PaymentNotification, verify_payment_notification
from scanpay.wechat.v2.orders import (
    CLOSE_ORDER_PATH,
    ORDER_QUERY_PATH,
    UNIFIED_ORDER_PATH,
    OrderStatus,
    UnifiedOrder,
    UnifiedOrderResult,
    close_order_fields,
    order_query_fields,
    parse_order_query,
    parse_unified_order,
)
from scanpay.wechat.v2.refund_notify import RefundNotification, decrypt_refund_notification
from scanpay.wechat.v2.refunds import (
    REFUND_PATH,
    REFUND_QUERY_PATH,
    RefundQuery,
    RefundQueryResult,
    RefundRequest,
    RefundResult,
    parse_refund,
    parse_refund_query,
)

DEFAULT_BASE_URL: Final = "https://api.mch.weixin.qq.com"
log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["ClientCertificate", "RetryPolicy", "V2Client", "random_nonce"]

# httpx errors raised before any byte of the request reached the server.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def random_nonce() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class ClientCertificate:
    """The merchant's API certificate for ``secapi/`` calls (``apiclient_cert``)."""

    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "ClientCertificate(<hidden>)"

    @classmethod
    def from_pem_files(cls, cert_path: str | Path, key_path: str | Path) -> ClientCertificate:
        try:
            return cls(Path(cert_path).read_bytes(), Path(key_path).read_bytes())
        except OSError as exc:
            raise ConfigurationError(f"cannot read client certificate: {exc.strerror}") from None

    @classmethod
    def from_pkcs12(cls, data: bytes, password: str | Secret) -> ClientCertificate:
        """``apiclient_cert.p12`` (its password is the mch_id unless changed)."""
        secret = password.reveal() if isinstance(password, Secret) else password
        try:
            key, cert, _chain = pkcs12.load_key_and_certificates(data, secret.encode())
        except ValueError:
            raise ConfigurationError("PKCS#12 bundle unreadable or wrong password") from None
        if key is None or cert is None:
            raise ConfigurationError("PKCS#12 bundle lacks the key or the certificate")
        key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        return cls(cert.public_bytes(Encoding.PEM), key_pem)

    def ssl_context(self, *, cadata: str | None = None) -> ssl.SSLContext:
        """A verifying TLS context that presents this certificate.

        ``cadata`` (PEM) replaces the system trust store, for private test servers.
        """
        context = ssl.create_default_context(cadata=cadata)
        # ssl loads key material from files only: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="scanpay-cert-") as folder:
            cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
            cert_file.write_bytes(self.cert_pem)
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(self.key_pem)
            try:
                context.load_cert_chain(cert_file, key_file)
            except ssl.SSLError:
                raise ConfigurationError("client certificate and key do not load") from None
        return context


class V2Client:
    """WeChat Pay API v2 for one merchant. ``base_url`` and ``transport`` are injectable."""

    def __init__(
        self,
        merchant: V2Merchant,
        *,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        nonce: Callable[[], str] = random_nonce,
        client_cert: ClientCertificate | None = None,
        retry: RetryPolicy = NO_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        server_ca_pem: str | None = None,
    ) -> None:
        self.merchant = merchant
        self.retry = retry
        self._sleep = sleep
        self._random = random
        self._nonce = nonce
        self._base_url = base_url.rstrip("/")
        self._transport = transport
        self._client_cert = client_cert
        self._server_ca_pem = server_ca_pem
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, connect_timeout))
        plain_verify = ssl.create_default_context(cadata=server_ca_pem) if server_ca_pem else True
        self._http = self._new_http(verify=plain_verify)
        self._secure: httpx.AsyncClient | None = None

    def _new_http(self, *, verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base_url,
            transport=self._transport,
            timeout=self._timeout,
            verify=verify,
            headers={"Content-Type": "text/xml; charset=utf-8", "User-Agent": "scanpay/0.1"},
        )

    def __repr__(self) -> str:
        return f"V2Client(mch_id={self.merchant.mch_id!r}, base_url={self._base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._secure is not None:
            await self._secure.aclose()

    async def __aenter__(self) -> V2Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _secure_http(self) -> httpx.AsyncClient:
        if self._transport is not None:
            return self._http  # tests / simulator: the transport stands in for TLS
        if self._secure is None:
            if self._client_cert is None:
                raise ConfigurationError("secapi calls need client_cert (the merchant API cert)")
            context = self._client_cert.ssl_context(cadata=self._server_ca_pem)
            self._secure = self._new_http(verify=context)
        return self._secure

    async def _exchange(
        self,
        path: str,
        body: bytes,
        read: Callable[[httpx.Response], T],
        *,
        secure: bool = False,
        idempotent: bool = True,
    ) -> T:
        """POST ``body`` and ``read`` the answer, repeating the same bytes where it is safe."""
        http = self._secure_http() if secure else self._http

        async def once() -> T:
            try:
                response = await http.post(path, content=body)
            except _NOT_SENT as exc:
                raise TransportError(f"{path}: {type(exc).__name__}", code=NOT_SENT) from None
            except httpx.TransportError as exc:
                raise TransportError(f"{path}: {type(exc).__name__}") from None
            if response.status_code >= 500:
                raise TransportError(f"{path}: HTTP {response.status_code}")
            return read(response)

        return await call_with_retry(
            once,
            self.retry,
            idempotent=idempotent,
            sleep=self._sleep,
            random=self._random,
            what=f"v2 {path}",
        )

    def _read_envelope(self, response: httpx.Response) -> dict[str, str]:
        return decode_response(response.content, self.merchant, http_status=response.status_code)

    async def call(
        self,
        path: str,
        fields: Mapping[str, str | int],
        *,
        secure: bool = False,
        idempotent: bool = True,
    ) -> dict[str, str]:
        """Sign, send, verify: the verified response fields or a typed error."""
        body = encode_request(fields, self.merchant, nonce=self._nonce())
        return await self._exchange(
            path, body, self._read_envelope, secure=secure, idempotent=idempotent
        )

    async def create_native_order(self, order: UnifiedOrder) -> UnifiedOrderResult:
        fields = await self.call(UNIFIED_ORDER_PATH, order.to_fields())
        return parse_unified_order(fields)

    async def query_order(self, *, out_trade_no: str = "", transaction_id: str = "") -> OrderStatus:
        query = order_query_fields(out_trade_no=out_trade_no, transaction_id=transaction_id)
        return parse_order_query(await self.call(ORDER_QUERY_PATH, query))

    async def close_order(self, out_trade_no: str) -> None:
        await self.call(CLOSE_ORDER_PATH, close_order_fields(out_trade_no))

    async def refund(self, request: RefundRequest) -> RefundResult:
        """``secapi/pay/refund`` over mutual TLS; the answer means *accepted*, not done."""
        fields = await self.call(REFUND_PATH, request.to_fields(), secure=True)
        return parse_refund(fields)

    async def query_refund(self, query: RefundQuery) -> RefundQueryResult:
        return parse_refund_query(await self.call(REFUND_QUERY_PATH, query.to_fields()))

    async def download_bill(self, request: DownloadBill) -> Bill:
        """The day's bill, parsed; ``ApiError`` when WeChat answers with an XML failure."""
        body = encode_request(request.to_fields(), self.merchant, nonce=self._nonce())

        def read(response: httpx.Response) -> Bill:
            return parse_bill_response(response.content, http_status=response.status_code)

        return await self._exchange(DOWNLOAD_BILL_PATH, body, read)

    async def download_bill_to(self, request: DownloadBill, out: BinaryIO) -> int:
        """Stream the day's bill file into ``out`` (gunzipped), never holding it whole; its
        size. ``ApiError`` when WeChat answers with an XML failure (``out`` then holds it)."""
        body = encode_request(request.to_fields(), self.merchant, nonce=self._nonce())

        async def once() -> int:
            out.seek(0)
            out.truncate()
            sink = BillSink(out)
            try:
                async with self._http.stream("POST", DOWNLOAD_BILL_PATH, content=body) as answer:
                    if answer.status_code >= 500:
                        raise TransportError(f"{DOWNLOAD_BILL_PATH}: HTTP {answer.status_code}")
                    async for chunk in answer.aiter_bytes():
                        sink.write(chunk)
                    status = answer.status_code
            except _NOT_SENT as exc:
                raise TransportError(
                    f"{DOWNLOAD_BILL_PATH}: {type(exc).__name__}", code=NOT_SENT
                ) from None
            except httpx.TransportError as exc:
                raise TransportError(f"{DOWNLOAD_BILL_PATH}: {type(exc).__name__}") from None
            sink.close()
            if sink.size < HEAD_BYTES:
                read_bill_bytes(sink.head, http_status=status)  # raises for an XML failure
            return sink.size

        return await call_with_retry(
            once, self.retry, idempotent=True, sleep=self._sleep, random=self._random,
            what=f"v2 {DOWNLOAD_BILL_PATH}",
        )  # fmt: skip

    def verify_payment_notification(self, body: bytes) -> PaymentNotification:
        """Check a payment notification's raw body: signature, then that it names us."""
        return verify_payment_notification(
            body, self.merchant.key, appid=self.merchant.appid, mch_id=self.merchant.mch_id
        )

    def decrypt_refund_notification(self, body: bytes) -> RefundNotification:
        return decrypt_refund_notification(body, self.merchant)
