"""The embeddable simulator: credentials, ledger, clock, payer, notifier and the ASGI app.

``Simulator.create(state_dir)`` loads (or makes and keeps) the test merchant's credentials
and ledger in ``state_dir``; ``None`` keeps everything in memory. ``sim.app`` serves WeChat's
paths at the root of its origin. ``async with sim`` runs the background notifier (an ASGI
server running ``sim.app`` does the same through the app's lifespan).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from starlette.applications import Starlette

from scanpay.errors import ConfigurationError, NotFoundError, ValidationError
from scanpay.simulator import credentials as credential_store
from scanpay.simulator.app import build_app
from scanpay.simulator.bills import Bills
from scanpay.simulator.clock import SimClock
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.simulator.fault_delivery import FaultyDelivery
from scanpay.simulator.faults import Fault, Faults
from scanpay.simulator.ledger import Ledger, Notification, Order
from scanpay.simulator.notifier import Notifier
from scanpay.simulator.payer import Payer, PayOutcome, PayResult
from scanpay.simulator.refund_control import restore_outcome
from scanpay.simulator.refunds import RefundBook
from scanpay.simulator.saved import CLOCK_OFFSET, FAULTS, SIGNATURE_CLOCK, SavedSettings
from scanpay.simulator.v2api import V2Api
from scanpay.simulator.v2refunds import V2Refunds
from scanpay.simulator.v3api import V3Api
from scanpay.simulator.v3refunds import V3Refunds
from scanpay.wechat.fields import BEIJING

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8090"
REAL = "real"
TEST = "test"


def generate_credentials() -> tuple[MerchantCredentials, SimulatorKeys]:
    """Fresh credentials for ``Simulator.create(credentials=...)`` (RSA keys take a moment)."""
    return credential_store.generate()


class Simulator:
    """One simulated WeChat Pay merchant account and the server that hosts it."""

    def __init__(
        self,
        *,
        creds: MerchantCredentials,
        keys: SimulatorKeys,
        ledger: Ledger,
        clock: SimClock,
        public_url: str,
        notify_transport: httpx.AsyncBaseTransport | None,
        merchant_name: str,
    ) -> None:
        self.credentials = creds
        self.keys = keys
        self.ledger = ledger
        self.clock = clock
        self.public_url = public_url.rstrip("/")
        self.merchant_name = merchant_name
        #: how the notifier (and ``scanpay doctor``) reach merchants; None: the network
        self.notify_transport = notify_transport
        #: mutual TLS on /secapi/ (set when serving HTTPS: scanpay.simulator.tls)
        self.require_client_certificate = False
        self.v2 = V2Api(creds, ledger, clock)
        #: "real": v3 signature timestamps (made and checked) follow real time, as SDKs
        #: expect; "test": they follow the simulator's clock (see :meth:`set_signature_clock`)
        self.signature_clock = REAL
        self.v3 = V3Api(creds, keys, ledger, clock, wall_clock=self.signature_time)
        self.notifier = Notifier(
            ledger, clock, transport=notify_transport, sign_headers=self._sign_v3_notification
        )
        self.payer = Payer(creds, ledger, clock, on_notification=self.notifier.wake)
        #: injected faults, platform-certificate rotation ticks, "user paying" completions
        self.faults = Faults()
        # fault settings, the clock offset and the choices below survive restarts
        self.saved = SavedSettings(ledger)
        self._restore_settings()
        self.notifier.deliver_round = FaultyDelivery(self.notifier, self.faults, ledger, clock)
        self.notifier.before_delivery.append(self._tick)
        # refunds and bills (scanpay.simulator.refunds / v2refunds / v3refunds / bills)
        self.refunds = RefundBook(creds, ledger, clock, on_notification=self.notifier.wake)
        self.notifier.before_delivery.append(self.refunds.settle)
        restore_outcome(
            self
        )  # the refund outcome a tester chose (scanpay.simulator.refund_control)
        self.v2_refunds = V2Refunds(self.v2, self.refunds)
        self.v3_refunds = V3Refunds(self.v3, self.refunds)
        self.bills = Bills(
            self.v2,
            self.v3,
            ledger,
            self.refunds,
            public_url=lambda: self.public_url,
            today=lambda: self.clock.now().astimezone(BEIJING).date(),
            faults=self.faults,
        )
        self.app: Starlette = build_app(self)

    @classmethod
    def create(
        cls,
        state_dir: Path | None = None,
        *,
        public_url: str = DEFAULT_PUBLIC_URL,
        notify_transport: httpx.AsyncBaseTransport | None = None,
        clock: SimClock | None = None,
        merchant_name: str = "scanpay demo shop",
        credentials: tuple[MerchantCredentials, SimulatorKeys] | None = None,
    ) -> Simulator:
        """A simulator; ``credentials`` (from :func:`generate_credentials`) reuses keys made
        earlier, which makes in-memory simulators in test suites cheap."""
        if credentials is not None and state_dir is not None:
            raise ConfigurationError("credentials= is for in-memory simulators only")
        creds, keys = credentials or credential_store.load_or_create(state_dir)
        return cls(
            creds=creds,
            keys=keys,
            ledger=Ledger(state_dir),
            clock=clock or SimClock(),
            public_url=public_url,
            notify_transport=notify_transport,
            merchant_name=merchant_name,
        )

    def __repr__(self) -> str:
        return f"Simulator(mchid={self.credentials.mchid!r}, public_url={self.public_url!r})"

    def _restore_settings(self) -> None:
        saved = self.saved
        try:
            state = saved.load(FAULTS)
            if state is not None:
                self.faults.restore(state)
            offset = saved.load(CLOCK_OFFSET)
            if offset is not None and float(offset) > self.clock.offset:
                self.clock.advance(float(offset) - self.clock.offset)
            signature_clock = saved.load(SIGNATURE_CLOCK)
            if signature_clock is not None:
                self.set_signature_clock(str(signature_clock))
        except (ValidationError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"saved simulator settings are unreadable: {exc}") from None
        self.faults.on_change = lambda: saved.save(FAULTS, self.faults.state())
        self._forget_clock = self.clock.subscribe(
            lambda: saved.save(CLOCK_OFFSET, self.clock.offset)
        )

    def signature_time(self) -> float:
        """What v3 signature timestamps are made and checked against (see signature_clock)."""
        return self.clock.timestamp() if self.signature_clock == TEST else time.time()

    def set_signature_clock(self, which: str) -> None:
        """``"real"`` (default) or ``"test"``: check request signatures' 5-minute window, and
        stamp answers and notifications, against the simulator's clock instead of real time,
        so tests that advance the clock on both sides stay consistent. Kept across restarts."""
        if which not in (REAL, TEST):
            raise ValidationError('the signature clock is "real" or "test"')
        self.signature_clock = which
        self.saved.save(SIGNATURE_CLOCK, which)

    def _sign_v3_notification(self, notification: Notification) -> dict[str, str]:
        order = self.ledger.order(notification.out_trade_no)
        if order is None:
            raise NotFoundError("notification for an order that is not in the ledger")
        return self.v3.sign_notification(notification.body, order)

    def _tick(self) -> None:
        now = self.clock.timestamp()
        if self.faults.due_rotation(now):
            serial = self.v3.keyring.rotate()
            self.faults.note(Fault.ROTATE_CERTIFICATE, serial=serial)
        self.payer.complete_user_paying(now)

    def resend_notification(self, notification_id: int) -> bool:
        """Make a notification due now again (one more attempt, then WeChat's schedule)."""
        with self.ledger.transaction() as db:
            cursor = db.execute(
                "UPDATE notifications SET status = 'pending', next_at = ? WHERE id = ?",
                (self.clock.timestamp(), notification_id),
            )
            found = cursor.rowcount == 1
        if found:
            self.notifier.wake()
        return found

    # lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.notifier.start()

    async def stop(self) -> None:
        await self.notifier.stop()

    def close(self) -> None:
        """Release the ledger (after :meth:`stop`); the object is unusable afterwards."""
        self._forget_clock()  # a clock shared with a later simulator no longer saves here
        self.ledger.close()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # the payer and the notifier -----------------------------------------------------------

    def scan_url(self, code_url: str) -> str:
        """The phone page for ``code_url`` (what a person "scans")."""
        return f"{self.public_url}/sim/scan?code_url={quote(code_url, safe='')}"

    async def pay(
        self,
        *,
        code_url: str = "",
        out_trade_no: str = "",
        outcome: PayOutcome = PayOutcome.SUCCESS,
    ) -> PayResult:
        """Act as the payer; raises NotFoundError / InvalidTransitionError when refused."""
        return self.payer.pay(code_url=code_url, out_trade_no=out_trade_no, outcome=outcome)

    async def deliver_due_notifications(self) -> int:
        """Attempt every notification due now and wait for the answers."""
        return await self.notifier.deliver_due()

    def notification_log(self) -> list[dict[str, Any]]:
        """Every notification with every attempt and the merchant's answer (JSON-ready)."""
        log: list[dict[str, Any]] = []
        for note, attempts in self.ledger.notifications():
            log.append(
                {
                    "id": note.id,
                    "kind": note.kind,
                    "out_trade_no": note.out_trade_no,
                    "url": note.url,
                    "status": note.status,
                    "attempts": [
                        {
                            "number": a.number,
                            "at": self._iso(a.at),
                            "offset_seconds": round(a.at - note.created_at, 3),
                            "http_status": a.http_status,
                            "acknowledged": a.acknowledged,
                            "answer": a.answer,
                            "error": a.error,
                        }
                        for a in attempts
                    ],
                    "next_attempt_at": self._iso(note.next_at) if note.next_at else None,
                    "created_at": self._iso(note.created_at),
                    "body": note.body.decode("utf-8", "replace"),
                }
            )
        return log

    def order_json(self, order: Order) -> dict[str, Any]:
        return {
            "out_trade_no": order.out_trade_no,
            "trade_state": order.trade_state.value,
            "total_fee": order.total_fee,
            "body": order.body,
            "attach": order.attach,
            "code_url": order.code_url,
            "prepay_id": order.prepay_id,
            "transaction_id": order.transaction_id,
            "notify_url": order.notify_url,
            "sign_type": order.sign_type.value,
            "time_expire": order.time_expire,
            "time_end": order.time_end,
            "created_at": self._iso(order.created_at),
            "payments": self.ledger.payments(order.out_trade_no),
        }

    @staticmethod
    def _iso(stamp: float) -> str:
        return datetime.fromtimestamp(stamp, UTC).isoformat()
