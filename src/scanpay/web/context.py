"""What the routes share: settings, store, use cases and the change hub (one per app)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from scanpay.config import Settings
from scanpay.domain.service import PaymentService
from scanpay.store.refunds import SqlRefundStore
from scanpay.web.errors import AuthenticationError
from scanpay.web.hub import ChangeHub

if TYPE_CHECKING:
    from scanpay.web.wiring import WeChatClients


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    store: SqlRefundStore  # SqlStore plus refunds
    service: PaymentService
    hub: ChangeHub
    client: WeChatClients  # closes the WeChat Pay clients (v2 and/or v3)

    async def aclose(self) -> None:
        """Release the WeChat clients and the database connections."""
        await self.client.aclose()
        self.store.close()

    def checkout_url(self, order_id: str) -> str:
        return f"{self.settings.public_base_url}/checkout/{order_id}"


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.scanpay
    return context


def require_shop_key(request: Request) -> None:
    """Dependency: ``Authorization: Bearer <shop_api_key>`` (constant-time compare)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    expected = get_context(request).settings.shop_api_key.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise AuthenticationError("a valid shop API key is required (Authorization: Bearer)")
