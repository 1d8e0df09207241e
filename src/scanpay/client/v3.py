"""Async client for WeChat Pay API v3 Native calls, over the pure core in scanpay.wechat.v3.

Every call: build an :class:`~scanpay.wechat.v3.request.ApiRequest` (exact body bytes), sign
``(method, path+query, body)`` with a fresh timestamp and nonce, send exactly those bytes,
then verify the answer's Wechatpay-* signature over the exact bytes received before parsing
anything (bill files excepted: WeChat does not sign them; their SHA-1 is checked instead).
Platform-certificate mode downloads ``/v3/certificates`` when a signature names a serial it
does not know (once per answer, then :class:`UnknownKeyError`). An answer from the WeChat API
itself may always do so. A notification may too, within limits that an outsider cannot turn
into a hold on everyone (:class:`RefreshLimits`): a serial that a download did not bring is
not asked for again, and one sender (a source address) does not trigger another download,
for ``certificate_refresh_interval`` seconds (60 by default, on the injected clock). So
forged notifications cannot make the client hammer WeChat, nor keep a genuine notification
signed by a freshly rotated certificate from being recognised. An empty
certificate list is a valid answer: a merchant that joined after WeChat introduced the
WeChat Pay public key has no platform certificates and must use public-key mode; the client
then says so in the :class:`UnknownKeyError` it raises. Public-key mode sends
``Wechatpay-Serial: PUB_KEY_ID_...``; both may be configured at once during a migration.
A bill's ``download_url`` is fetched from ``base_url``'s origin (its path and query only), so the
Authorization header never goes to a host other than the configured one.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import BinaryIO, Final
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from scanpay.client.retry import NOT_SENT, RetryPolicy, call_with_retry
from scanpay.errors import (
    ConfigurationError,
    MalformedMessageError,
    TransportError,
    UnknownKeyError,
)
from scanpay.wechat.bill import Bill, BillSink
from scanpay.wechat.keys import TrustStore, is_public_key_id, load_private_key
from scanpay.wechat.secret import Secret
from scanpay.wechat.v3.aead import api_v3_cipher
from scanpay.wechat.v3.apierror import parse_error
from scanpay.wechat.v3.bills import (
    AccountType,
    FundFlowBill,
    TradeBillType,
    bill_download_request,
    fund_flow_bill_from,
    fund_flow_bill_request,
    parse_bill_descriptor,
    parse_trade_bill,
    trade_bill_request,
)
from scanpay.wechat.v3.certificates import certificates_request, parse_certificates
from scanpay.wechat.v3.jsonbody import parse_json
from scanpay.wechat.v3.notify import (
    PaymentNotice,
    RefundNotice,
    open_envelope,
    parse_envelope,
)
from scanpay.wechat.v3.refunds import (
    Refund,
    RefundApplication,
    create_refund_request,
    parse_refund,
    query_refund_request,
)
from scanpay.wechat.v3.request import ApiRequest
from scanpay.wechat.v3.sign import V3Merchant, build_authorization
from scanpay.wechat.v3.transactions import (
    NativeOrder,
    Transaction,
    close_order_request,
    native_prepay_request,
    parse_code_url,
    parse_transaction,
    query_by_out_trade_no_request,
    query_by_transaction_id_request,
)
from scanpay.wechat.v3.verify import (
    REQUEST_ID,
    HeaderSource,
    SignedHeaders,
    read_signed_headers,
    verify_signed,
)

DEFAULT_BASE_URL: Final = "https://api.mch.weixin.qq.com"
USER_AGENT: Final = "scanpay/0.1 (+https://github.com/scanpay)"
log = logging.getLogger(__name__)
_NOT_SENT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
CERTIFICATE_REFRESH_INTERVAL: Final = 60.0
PUBLIC_KEY_ADVICE: Final = (
    "configure the WeChat Pay public key (its PUB_KEY_ID_... and PEM, public-key mode)"
)


def _shown(serial: str) -> str:
    """A serial from a message header, safe to put in an error (short, quoted)."""
    return repr(serial[:64])


def _lists_nothing(body: bytes) -> bool:
    """True for a ``/v3/certificates`` answer whose ``data`` is an empty list."""
    data = parse_json(body)
    entries = data.get("data")
    return isinstance(entries, list) and not entries


def random_nonce() -> str:
    return secrets.token_hex(16).upper()


class RefreshLimits:
    """Which unknown serials from notifications may trigger a certificate download.

    Two bounded maps on the client's clock: serials a download did not bring, and senders
    that triggered a download, each with the time; entries older than ``hold`` seconds no
    longer count. Never a single global hold: a new serial from a new sender is always
    allowed, so a genuine notification after a rotation is recognised at once.
    """

    def __init__(self, clock: Callable[[], float], hold: float, max_entries: int = 4096) -> None:
        self._clock = clock
        self.hold = hold
        self._max = max_entries
        self.missed: dict[str, float] = {}
        self.senders: dict[str, float] = {}

    def _recent(self, table: dict[str, float], key: str) -> bool:
        at = table.get(key)
        return at is not None and 0 <= self._clock() - at < self.hold

    def _note(self, table: dict[str, float], key: str) -> None:
        table.pop(key, None)
        table[key] = self._clock()
        while len(table) > self._max:  # the oldest first (insertion order)
            del table[next(iter(table))]

    def refusal(self, serial: str, sender: str) -> str | None:
        """Why a download for ``serial`` from ``sender`` is not made now, or None."""
        if self._recent(self.missed, serial):
            return (
                f"unknown serial {_shown(serial)}; platform certificates were downloaded "
                f"less than {self.hold:g} s ago without it"
            )
        if self._recent(self.senders, sender):
            return (
                f"unknown serial {_shown(serial)}; this sender triggered a certificate "
                f"download less than {self.hold:g} s ago"
            )
        return None

    def triggered(self, sender: str) -> None:
        self._note(self.senders, sender)

    def lacked(self, serial: str) -> None:
        self._note(self.missed, serial)


class V3Client:
    """WeChat Pay API v3 for one merchant. Base URL, transport, clock, nonce, retry policy,
    sleep and random source are injectable."""

    def __init__(
        self,
        mchid: str,
        merchant_serial_no: str,
        merchant_private_key: RSAPrivateKey | bytes | str,
        api_v3_key: Secret,
        trust: TrustStore,
        *,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = random_nonce,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random_source: Callable[[], float] = random.random,
        download_certificates: bool | None = None,
        certificate_refresh_interval: float = CERTIFICATE_REFRESH_INTERVAL,
    ) -> None:
        if not isinstance(api_v3_key, Secret):
            raise ConfigurationError("api_v3_key must be a Secret")
        key = (
            merchant_private_key
            if isinstance(merchant_private_key, RSAPrivateKey)
            else load_private_key(merchant_private_key)
        )
        self.merchant = V3Merchant(mchid, merchant_serial_no.upper(), key)
        self.trust = trust
        self._cipher = api_v3_cipher(api_v3_key)
        self._clock = clock
        self._nonce = nonce
        self._retry = retry
        self._sleep = sleep
        self._random = random_source
        if download_certificates is None:
            download_certificates = bool(trust.certificate_serials) or not trust.public_key_ids
        self.download_certificates = download_certificates
        self._refresh_lock = asyncio.Lock()
        self._refresh_interval = certificate_refresh_interval
        self.refresh_limits = RefreshLimits(clock, certificate_refresh_interval)
        self.downloads = 0  # certificate downloads made (metrics)
        self._no_certificates = False  # the last download listed none (a new merchant)
        self._base_path = urlsplit(base_url).path.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    def __repr__(self) -> str:
        return (
            f"V3Client(mchid={self.merchant.mchid!r}, serial_no={self.merchant.serial_no!r}, "
            f"base_url={str(self._http.base_url)!r}, trust={self.trust!r})"
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> V3Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the exchange -----------------------------------------------------------------

    def now(self) -> int:
        return int(self._clock())

    async def _send_once(
        self, request: ApiRequest, *, allow_refresh: bool = True
    ) -> httpx.Response:
        target = self._base_path + request.url
        authorization = build_authorization(
            self.merchant,
            request.method,
            target,
            request.body,
            timestamp=self.now(),
            nonce=self._nonce(),
        )
        headers = {"Authorization": authorization}
        if request.body:
            headers["Content-Type"] = "application/json"
        serial = self.trust.preferred_serial()
        if serial is not None and is_public_key_id(serial):
            headers["Wechatpay-Serial"] = serial
        try:
            response = await self._http.request(
                request.method, target, content=request.body, headers=headers
            )
        except _NOT_SENT_ERRORS as exc:
            raise TransportError(
                f"{request.method} {request.url}: {type(exc).__name__}", code=NOT_SENT
            ) from None
        except httpx.TransportError as exc:
            raise TransportError(f"{request.method} {request.url}: {type(exc).__name__}") from None
        request_id = response.headers.get(REQUEST_ID)
        log.debug("%s %s -> %s [%s]", request.method, request.url, response.status_code, request_id)
        if response.is_success:
            if request.signed_response:
                await self._verify(response.headers, response.content, allow_refresh)
            return response
        if response.headers.get("Wechatpay-Signature"):
            # WeChat signs its error answers too; a forged error must not pass as WeChat's.
            await self._verify(response.headers, response.content, allow_refresh)
        raise parse_error(response.status_code, response.content, request_id)

    async def send(self, request: ApiRequest) -> httpx.Response:
        """Sign, send, verify (retrying where safe); the verified 2xx response."""
        return await call_with_retry(
            lambda: self._send_once(request),
            self._retry,
            idempotent=request.idempotent,
            sleep=self._sleep,
            random=self._random,
            what=f"{request.method} {request.url}",
        )

    # --- trust ---------------------------------------------------------------------------

    async def _verify(
        self,
        headers: HeaderSource,
        body: bytes,
        allow_refresh: bool = True,
        sender: str | None = None,
    ) -> SignedHeaders:
        signed = read_signed_headers(headers)
        try:
            verify_signed(signed, body, self.trust, now=self.now())
        except UnknownKeyError:
            if is_public_key_id(signed.serial):
                raise UnknownKeyError(
                    f"signed with WeChat Pay public key {_shown(signed.serial)}, which this client "
                    f"does not have: {PUBLIC_KEY_ADVICE}"
                ) from None
            if not (allow_refresh and self.download_certificates):
                raise
            await self.refresh_certificates(wanted=signed.serial, sender=sender)
            try:
                verify_signed(signed, body, self.trust, now=self.now())
            except UnknownKeyError:
                if self._no_certificates:
                    raise UnknownKeyError(
                        "WeChat Pay lists no platform certificates for this merchant: "
                        + PUBLIC_KEY_ADVICE
                    ) from None
                raise
        return signed

    async def refresh_certificates(
        self, *, wanted: str | None = None, sender: str | None = None
    ) -> list[str]:
        """Download, decrypt and trust the platform certificates; their serials.

        The answer is decrypted first (only WeChat Pay and this merchant know the API v3 key),
        then its signature is checked with the certificates it brought plus those trusted.
        An empty list (a new merchant, public-key mode only) is answered with ``[]`` and
        changes nothing. With ``wanted`` (an automatic refresh for an unknown serial) and a
        ``sender`` (a notification's source address; ``""`` when unknown) the download is made
        only within :class:`RefreshLimits`, :class:`UnknownKeyError` otherwise. Without a
        sender (an answer from the WeChat API itself, or the scheduled refresh) it is always
        made; concurrent calls wait for one download and find its result.
        """
        async with self._refresh_lock:
            if wanted is not None and wanted in self.trust:
                return list(self.trust.certificate_serials)
            if wanted is not None and sender is not None:
                refusal = self.refresh_limits.refusal(wanted, sender)
                if refusal is not None:
                    raise UnknownKeyError(refusal)
                self.refresh_limits.triggered(sender)
            self.downloads += 1
            request = certificates_request()
            response = await call_with_retry(
                lambda: self._fetch_unverified(request),
                self._retry,
                idempotent=True,
                sleep=self._sleep,
                random=self._random,
                what="GET /v3/certificates",
            )
            signed = read_signed_headers(response.headers)
            if _lists_nothing(response.content):
                self._no_certificates = True
                if wanted is not None:
                    self.refresh_limits.lacked(wanted)
                # Nothing will be trusted; check the signature when its key is known.
                if signed.serial in self.trust:
                    verify_signed(signed, response.content, self.trust, now=self.now())
                log.warning("WeChat Pay lists no platform certificates: use public-key mode")
                return []
            certificates = parse_certificates(response.content, self._cipher)
            trial = self.trust.copy()
            for cert in certificates:
                trial.add_certificate(cert)
            verify_signed(signed, response.content, trial, now=self.now())
            serials = [self.trust.add_certificate(cert) for cert in certificates]
            self._no_certificates = False
            if wanted is not None and wanted not in serials:
                self.refresh_limits.lacked(wanted)
            log.info("trusted %d platform certificate(s)", len(serials))
            return serials

    async def _fetch_unverified(self, request: ApiRequest) -> httpx.Response:
        unsigned = ApiRequest(
            request.method, request.url, request.body, True, signed_response=False
        )
        return await self._send_once(unsigned, allow_refresh=False)

    async def verify_notification(
        self, headers: HeaderSource, body: bytes, *, sender: str = ""
    ) -> PaymentNotice | RefundNotice:
        """Verify (refreshing certificates once for an unknown serial, within the limits for
        ``sender``: the source address), decrypt, type. A payment naming another merchant is
        returned as it is: the domain compares it with the order (and raises the alert), as
        for API v2; a refund naming another merchant is refused here."""
        signed = await self._verify(headers, body, sender=sender)
        envelope = parse_envelope(body)
        resource = open_envelope(envelope, self._cipher)
        if isinstance(resource, Transaction):
            return PaymentNotice(envelope, resource, signed)
        if resource.mchid:
            self._check_merchant(resource.mchid)
        return RefundNotice(envelope, resource, signed)

    def _check_merchant(self, mchid: str) -> None:
        if mchid != self.merchant.mchid:
            raise MalformedMessageError("message names another merchant")

    # --- API calls -------------------------------------------------------------------------

    async def create_native_order(self, order: NativeOrder) -> str:
        """Native prepay; the ``code_url`` to show as a QR code."""
        self._check_merchant(order.mchid)
        response = await self.send(native_prepay_request(order))
        return parse_code_url(response.content)

    async def query_by_out_trade_no(self, out_trade_no: str) -> Transaction:
        response = await self.send(query_by_out_trade_no_request(out_trade_no, self.merchant.mchid))
        transaction = parse_transaction(response.content)
        self._check_merchant(transaction.mchid)
        if transaction.out_trade_no != out_trade_no:
            raise MalformedMessageError("answer is about another order")
        return transaction

    async def query_by_transaction_id(self, transaction_id: str) -> Transaction:
        request = query_by_transaction_id_request(transaction_id, self.merchant.mchid)
        transaction = parse_transaction((await self.send(request)).content)
        self._check_merchant(transaction.mchid)
        if transaction.transaction_id != transaction_id:
            raise MalformedMessageError("answer is about another transaction")
        return transaction

    async def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order (WeChat answers 204); confirm by querying."""
        await self.send(close_order_request(out_trade_no, self.merchant.mchid))

    async def create_refund(self, application: RefundApplication) -> Refund:
        refund = parse_refund((await self.send(create_refund_request(application))).content)
        if refund.out_refund_no != application.out_refund_no:
            raise MalformedMessageError("answer is about another refund")
        return refund

    async def query_refund(self, out_refund_no: str) -> Refund:
        refund = parse_refund((await self.send(query_refund_request(out_refund_no))).content)
        if refund.out_refund_no != out_refund_no:
            raise MalformedMessageError("answer is about another refund")
        return refund

    async def trade_bill(
        self, bill_date: date, bill_type: TradeBillType = TradeBillType.ALL, *, gzip: bool = False
    ) -> Bill:
        descriptor = parse_bill_descriptor(
            (await self.send(trade_bill_request(bill_date, bill_type, gzip=gzip))).content
        )
        content = (await self.send(bill_download_request(descriptor))).content
        return parse_trade_bill(content, descriptor)

    async def trade_bill_to(
        self,
        bill_date: date,
        out: BinaryIO,
        bill_type: TradeBillType = TradeBillType.ALL,
        *,
        gzip: bool = False,
    ) -> int:
        """Stream the trade bill file into ``out`` (gunzipped, SHA-1 checked), never holding
        it whole; its size."""
        descriptor = parse_bill_descriptor(
            (await self.send(trade_bill_request(bill_date, bill_type, gzip=gzip))).content
        )
        request = bill_download_request(descriptor)

        async def once() -> int:
            out.seek(0)
            out.truncate()
            sink = BillSink(out)
            target = self._base_path + request.url
            authorization = build_authorization(
                self.merchant, "GET", target, b"", timestamp=self.now(), nonce=self._nonce()
            )
            try:
                async with self._http.stream(
                    "GET", target, headers={"Authorization": authorization}
                ) as answer:
                    if not answer.is_success:
                        await answer.aread()
                        raise parse_error(
                            answer.status_code, answer.content, answer.headers.get(REQUEST_ID)
                        )
                    async for chunk in answer.aiter_bytes():
                        sink.write(chunk)
            except _NOT_SENT_ERRORS as exc:
                raise TransportError(f"GET {request.url}: {type(exc).__name__}",
                                     code=NOT_SENT) from None  # fmt: skip
            except httpx.TransportError as exc:
                raise TransportError(f"GET {request.url}: {type(exc).__name__}") from None
            sink.close()
            expected = descriptor.hash_value.encode("ascii", "replace")
            if not any(
                hmac.compare_digest(digest.encode(), expected)
                for digest in (sink.received_sha1, sink.file_sha1)
            ):
                raise MalformedMessageError("bill SHA1 does not match hash_value")
            return sink.size

        return await call_with_retry(
            once, self._retry, idempotent=True, sleep=self._sleep, random=self._random,
            what=f"GET {request.url}",
        )  # fmt: skip

    async def fund_flow_bill(
        self, bill_date: date, account_type: AccountType = AccountType.BASIC, *, gzip: bool = False
    ) -> FundFlowBill:
        request = fund_flow_bill_request(bill_date, account_type, gzip=gzip)
        descriptor = parse_bill_descriptor((await self.send(request)).content)
        content = (await self.send(bill_download_request(descriptor))).content
        return fund_flow_bill_from(content, descriptor)
