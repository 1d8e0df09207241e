"""Async client for WeChat Pay API v2 (XML) Native calls."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Final

import httpx

from scanpay.errors import TransportError
from scanpay.wechat.v2.envelope import V2Merchant, decode_response, encode_request
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

DEFAULT_BASE_URL: Final = "https://api.mch.weixin.qq.com"
log = logging.getLogger(__name__)


def random_nonce() -> str:
    return secrets.token_hex(16)


class V2Client:
    """WeChat Pay API v2 for one merchant. ``base_url`` and ``transport`` are injectable."""

    def __init__(
        self,
        merchant: V2Merchant,
        *,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        nonce: Callable[[], str] = random_nonce,
    ) -> None:
        self.merchant = merchant
        self._nonce = nonce
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Content-Type": "text/xml; charset=utf-8", "User-Agent": "scanpay/0.1"},
        )

    def __repr__(self) -> str:
        return f"V2Client(mch_id={self.merchant.mch_id!r}, base_url={str(self._http.base_url)!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> V2Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, path: str, fields: Mapping[str, str | int]) -> dict[str, str]:
        """Sign, send, verify: the verified response fields or a typed error."""
        body = encode_request(fields, self.merchant, nonce=self._nonce())
        try:
            response = await self._http.post(path, content=body)
        except httpx.TransportError as exc:
            raise TransportError(f"{path}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise TransportError(f"{path}: HTTP {response.status_code}")
        return decode_response(response.content, self.merchant, http_status=response.status_code)

    async def create_native_order(self, order: UnifiedOrder) -> UnifiedOrderResult:
        fields = await self.call(UNIFIED_ORDER_PATH, order.to_fields())
        return parse_unified_order(fields)

    async def query_order(self, *, out_trade_no: str = "", transaction_id: str = "") -> OrderStatus:
        query = order_query_fields(out_trade_no=out_trade_no, transaction_id=transaction_id)
        return parse_order_query(await self.call(ORDER_QUERY_PATH, query))

    async def close_order(self, out_trade_no: str) -> None:
        await self.call(CLOSE_ORDER_PATH, close_order_fields(out_trade_no))
