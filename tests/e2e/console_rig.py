"""A running service and simulator for the console's browser tests (one per test module).

The two are served on loopback ports from a background thread and share one advanceable
clock (``POST /sim/clock/advance``). The reconciler is off, so nothing happens behind the
test's back. Between the service and the simulator sits :class:`LyingWire`: real HTTP to the
simulator, plus one injector, a close that answers SUCCESS without closing, the only way to
get both QR codes of one order paid (the simulator itself never lies; see
``tests/web/lifecycle_kit.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from scanpay.client.v2 import V2Client
from scanpay.domain.model import utcnow
from scanpay.domain.operators import Role
from scanpay.simulator.credentials import MerchantCredentials
from scanpay.store.operators import OperatorStore
from scanpay.web.console.passwords import hash_password
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.envelope import V2Merchant, encode_response
from scanpay.wechat.v2.refunds import RefundQuery
from scanpay.wechat.xmlcodec import parse_xml
from tests.e2e.conftest import serve_clocked_shop

SHOP_KEY = "shop-key-for-console-tests-0123"
PASSWORDS = {
    "ada": "ada-admin-password-1",
    "sam": "sam-support-password-2",
    "vic": "vic-viewer-password-3",
}
ROLES = {"ada": Role.ADMIN, "sam": Role.SUPPORT, "vic": Role.VIEWER}


class LyingWire(httpx.AsyncBaseTransport):
    """Merchant -> simulator over real HTTP; ``lying_close`` fakes a successful close."""

    def __init__(self, credentials: MerchantCredentials) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.credentials = credentials
        self.lying_close = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.lying_close and request.url.path == "/pay/closeorder":
            fields = parse_xml(await request.aread())
            answer = encode_response(
                {"appid": self.credentials.appid, "mch_id": self.credentials.mchid,
                 "result_code": "SUCCESS"},
                self.credentials.api_v2_key,
                SignType(fields.get("sign_type", "MD5")),
                nonce="consoletestlie01",
            )  # fmt: skip
            return httpx.Response(200, content=answer, headers={"Content-Type": "text/xml"})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class ConsoleRig:
    shop_url: str
    simulator_url: str
    engine: sa.Engine
    wire: LyingWire
    credentials: MerchantCredentials
    secrets: tuple[str, ...]  # every secret that must never reach a page or a log
    log_path: Path
    session_tokens: list[str] = field(default_factory=list)  # every session the tests made

    def post_sim(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(self.simulator_url + path, json=body, timeout=20)
        assert response.status_code < 300, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def sim_faults(self, faults: dict[str, Any]) -> None:
        self.post_sim("/sim/faults", {"faults": faults, "seed": 7})

    def clear_faults(self) -> None:
        httpx.delete(self.simulator_url + "/sim/faults", timeout=10).raise_for_status()

    def advance(self, seconds: float) -> None:
        self.post_sim("/sim/clock/advance", {"seconds": seconds})

    def create_order(self, amount: int = 1999, description: str = "Green tea") -> dict[str, Any]:
        response = httpx.post(
            self.shop_url + "/api/orders",
            json={"amount": amount, "description": description},
            headers={"Authorization": f"Bearer {SHOP_KEY}"},
            timeout=20,
        )
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        return order

    def order(self, order_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.shop_url}/api/orders/{order_id}", timeout=10)
        answer: dict[str, Any] = response.json()
        return answer

    def paid_order(self, amount: int = 1999, description: str = "Green tea") -> dict[str, Any]:
        order = self.create_order(amount, description)
        self.post_sim("/sim/pay", {"code_url": order["code_url"]})
        return self.wait_status(order["id"], "paid")

    def wait_status(self, order_id: str, status: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            order = self.order(order_id)
            if order["status"] == status:
                return order
            if time.monotonic() > deadline:
                raise AssertionError(f"order {order_id} is {order['status']}, not {status}")
            time.sleep(0.1)

    def refund_state_at_wechat(self, out_refund_no: str) -> str:
        """What the simulator answers a signed ``pay/refundquery`` (over HTTP) for a refund."""

        async def ask() -> str:
            creds = self.credentials
            merchant = V2Merchant(creds.appid, creds.mchid, creds.api_v2_key)
            async with V2Client(merchant, base_url=self.simulator_url) as client:
                found = await client.query_refund(RefundQuery(out_refund_no=out_refund_no))
            (item,) = [r for r in found.refunds if r.out_refund_no == out_refund_no]
            return item.refund_status.value

        # Playwright's sync API runs an event loop in this thread: ask from another one
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, ask()).result(timeout=30)

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql), params)]


@pytest.fixture(scope="module")
def console_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleRig]:
    import logging

    tmp = tmp_path_factory.mktemp("console")
    # everything scanpay and uvicorn log goes to one file the tests read for secrets
    log_path = tmp / "service.log"
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    wires: list[LyingWire] = []

    def wire(credentials: MerchantCredentials) -> LyingWire:
        wires.append(LyingWire(credentials))
        return wires[-1]

    try:
        with serve_clocked_shop(
            tmp,
            SHOP_KEY,
            wire=wire,
            uvicorn_options={"log_level": "info", "log_config": None},
            reconciler_enabled=False,
            console_sign_in_delay_seconds=0.05,
            console_sign_in_lock_after=3,
            webhook_allow_private=True,  # endpoints on loopback receivers (test_console.py)
        ) as shop:
            engine: sa.Engine = shop.app.state.scanpay.store.engine
            operators = OperatorStore(engine)
            for name, password in PASSWORDS.items():
                operators.add(name, ROLES[name], hash_password(password), utcnow())
            with engine.connect() as conn:
                hashes = tuple(
                    r[0] for r in conn.execute(sa.text("SELECT password_hash FROM operators"))
                )
            secrets = (SHOP_KEY, shop.credentials.api_v2_key.reveal(), *hashes,
                       *PASSWORDS.values())  # fmt: skip
            yield ConsoleRig(
                shop.shop_url, shop.simulator_url, engine, wires[0], shop.credentials,
                secrets, log_path,
            )  # fmt: skip
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
