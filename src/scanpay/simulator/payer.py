"""The shopper's side: scanning a ``code_url`` (or naming an order) and paying, or not.

Outcomes: ``success`` pays the order (NOTPAY -> SUCCESS, compare-and-set) and queues the
payment notification; ``cancel`` and ``insufficient_balance`` leave it NOTPAY, as WeChat
does when the payer backs out or the balance is short; ``user_paying`` holds the order in
USERPAYING for ``Payer.user_paying_seconds`` of simulated time (30 s by default), after which
it is paid and notified like ``success`` (settled from the notifier's rounds, so advancing the
test clock is enough). Paying is refused, with an error
whose ``code`` says why, for an unknown order or code, an expired QR (``code_url`` lives two
hours), an order past its ``time_expire``, a closed order or one already paid.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from scanpay.errors import InvalidTransitionError, NotFoundError, ValidationError
from scanpay.simulator import ids
from scanpay.simulator.clock import SimClock
from scanpay.simulator.credentials import MerchantCredentials
from scanpay.simulator.ledger import Ledger, Order
from scanpay.simulator.v2api import CODE_URL_LIFETIME
from scanpay.simulator.v3api import transaction
from scanpay.wechat.fields import format_v2_time, parse_v2_time
from scanpay.wechat.states import TradeState
from scanpay.wechat.v2.notify import build_payment_notification
from scanpay.wechat.v3.notify import build_notification


class PayOutcome(StrEnum):
    SUCCESS = "success"
    CANCEL = "cancel"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    #: USERPAYING (entering the password) for ``Payer.user_paying_seconds`` of simulated
    #: time, then SUCCESS and the notification
    USER_PAYING = "user_paying"


MESSAGES = {
    PayOutcome.SUCCESS: "Paid",
    PayOutcome.CANCEL: "The payer cancelled; the order is still unpaid",
    PayOutcome.INSUFFICIENT_BALANCE: "Insufficient balance; the order is still unpaid",
    PayOutcome.USER_PAYING: "The payer is entering the password (USERPAYING)",
}
USER_PAYING_SECONDS = 30.0


@dataclass(frozen=True)
class PayResult:
    """What happened when the simulated payer acted on an order."""

    out_trade_no: str
    outcome: PayOutcome
    paid: bool
    trade_state: TradeState
    total_fee: int
    transaction_id: str
    message: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["trade_state"] = self.trade_state.value
        return data


class Payer:
    def __init__(
        self,
        creds: MerchantCredentials,
        ledger: Ledger,
        clock: SimClock,
        *,
        on_notification: Callable[[], None],
    ) -> None:
        self._creds = creds
        self._ledger = ledger
        self._clock = clock
        self._on_notification = on_notification
        self.user_paying_seconds = USER_PAYING_SECONDS
        self._paying_until: dict[str, float] = {}
        self._paying_loaded = False

    def find(self, *, code_url: str = "", out_trade_no: str = "") -> Order:
        """The order a code or number names, checked to be payable now."""
        if bool(code_url) == bool(out_trade_no):
            raise ValidationError("give exactly one of code_url and out_trade_no")
        now = self._clock.timestamp()
        if code_url:
            order = self._ledger.order_by_code_url(code_url)
            if order is None:
                raise NotFoundError("no order has this code_url", code="CODE_URL_NOT_FOUND")
        else:
            order = self._ledger.order(out_trade_no)
            if order is None:
                raise NotFoundError("no order has this out_trade_no", code="ORDER_NOT_EXIST")
        self._check_payable(order, now, by_code=bool(code_url))
        return order

    def _check_payable(self, order: Order, now: float, *, by_code: bool) -> None:
        if order.trade_state is TradeState.SUCCESS:
            raise InvalidTransitionError("the order is already paid", code="ORDER_PAID")
        if order.trade_state is TradeState.CLOSED:
            raise InvalidTransitionError("the order is closed", code="ORDER_CLOSED")
        if order.trade_state is not TradeState.NOTPAY:
            raise InvalidTransitionError(
                f"the order is {order.trade_state.value}", code="ORDER_NOT_PAYABLE"
            )
        if order.time_expire and parse_v2_time(order.time_expire).timestamp() <= now:
            raise InvalidTransitionError(
                "the order expired (time_expire has passed)", code="ORDER_EXPIRED"
            )
        if by_code and order.code_issued_at + CODE_URL_LIFETIME <= now:
            raise InvalidTransitionError(
                "this QR code expired (a code_url lives two hours)", code="CODE_URL_EXPIRED"
            )

    def pay(
        self,
        *,
        code_url: str = "",
        out_trade_no: str = "",
        outcome: PayOutcome = PayOutcome.SUCCESS,
    ) -> PayResult:
        try:
            order = self.find(code_url=code_url, out_trade_no=out_trade_no)
        except InvalidTransitionError as exc:
            self._log_refusal(code_url, out_trade_no, outcome, exc)
            raise
        now = self._clock.now()
        if outcome is PayOutcome.USER_PAYING:
            return self._start_user_paying(order, now.timestamp())
        if outcome is not PayOutcome.SUCCESS:
            self._ledger.record_payment(
                order.out_trade_no, outcome.value, now.timestamp(), order.trade_state,
                MESSAGES[outcome],
            )  # fmt: skip
            return self._result(order, outcome, paid=False)
        if not self._settle(order.out_trade_no, TradeState.NOTPAY, now):
            # closed or paid in between: report what happened instead
            self.find(out_trade_no=order.out_trade_no)
            raise InvalidTransitionError("the order changed while paying", code="CONFLICT")
        paid = self._ledger.order(order.out_trade_no)
        assert paid is not None
        return self._result(paid, outcome, paid=True)

    def _settle(
        self, out_trade_no: str, expected: TradeState, now: datetime, *, notify: bool = True
    ) -> bool:
        """``expected`` -> SUCCESS with payer details, then the notification; False if lost."""
        transaction_id = ids.transaction_id(now)
        won = self._ledger.transition(
            out_trade_no,
            expected=expected,
            new=TradeState.SUCCESS,
            at=now.timestamp(),
            transaction_id=transaction_id,
            openid=ids.openid(),
            bank_type="OTHERS",
            time_end=format_v2_time(now),
        )
        if not won:
            return False
        paid = self._ledger.order(out_trade_no)
        assert paid is not None
        self._ledger.record_payment(
            paid.out_trade_no, PayOutcome.SUCCESS.value, now.timestamp(), paid.trade_state, "Paid"
        )
        if notify:
            self._queue_notification(paid)
        return True

    def pay_without_notification(self, out_trade_no: str) -> Order:
        """Pay an unpaid order but queue no notification: ``scanpay doctor`` sends its own
        (scanpay.simulator.doctor). Refused like :meth:`pay` when the order is not payable."""
        order = self.find(out_trade_no=out_trade_no)
        if not self._settle(order.out_trade_no, TradeState.NOTPAY, self._clock.now(), notify=False):
            raise InvalidTransitionError("the order changed while paying", code="CONFLICT")
        paid = self._ledger.order(order.out_trade_no)
        assert paid is not None
        return paid

    def _start_user_paying(self, order: Order, now: float) -> PayResult:
        outcome = PayOutcome.USER_PAYING
        if not self._ledger.transition(
            order.out_trade_no, expected=TradeState.NOTPAY, new=TradeState.USERPAYING, at=now
        ):
            self.find(out_trade_no=order.out_trade_no)
            raise InvalidTransitionError("the order changed while paying", code="CONFLICT")
        self._paying_until[order.out_trade_no] = now + self.user_paying_seconds
        self._ledger.record_payment(
            order.out_trade_no, outcome.value, now, TradeState.USERPAYING, MESSAGES[outcome]
        )
        paying = self._ledger.order(order.out_trade_no)
        assert paying is not None
        return self._result(paying, outcome, paid=False)

    def complete_user_paying(self, now: float) -> list[str]:
        """Settle every USERPAYING order whose time is up (on the simulator's clock).

        After a restart, orders found in USERPAYING finish ``user_paying_seconds`` after
        they entered it."""
        if not self._paying_loaded:
            self._paying_loaded = True
            for order in self._ledger.orders():
                if order.trade_state is TradeState.USERPAYING:
                    self._paying_until.setdefault(
                        order.out_trade_no, order.updated_at + self.user_paying_seconds
                    )
        settled = []
        for out_trade_no, until in sorted(self._paying_until.items(), key=lambda kv: kv[1]):
            if until > now:
                continue
            del self._paying_until[out_trade_no]
            moment = datetime.fromtimestamp(until, UTC)
            if self._settle(out_trade_no, TradeState.USERPAYING, moment):
                settled.append(out_trade_no)
        return settled

    def _log_refusal(
        self, code_url: str, out_trade_no: str, outcome: PayOutcome, exc: InvalidTransitionError
    ) -> None:
        if code_url:
            order = self._ledger.order_by_code_url(code_url)
        else:
            order = self._ledger.order(out_trade_no)
        if order is not None:
            self._ledger.record_payment(
                order.out_trade_no, f"{outcome.value} (refused)", self._clock.timestamp(),
                order.trade_state, exc.message,
            )  # fmt: skip

    def _result(self, order: Order, outcome: PayOutcome, *, paid: bool) -> PayResult:
        return PayResult(
            out_trade_no=order.out_trade_no,
            outcome=outcome,
            paid=paid,
            trade_state=order.trade_state,
            total_fee=order.total_fee,
            transaction_id=order.transaction_id or "",
            message=MESSAGES[outcome],
        )

    def _queue_notification(self, order: Order) -> None:
        if order.api == "v3":
            self._queue_v3_notification(order)
            return
        fields = v2_notification_fields(order)
        body = build_payment_notification(fields, self._creds.api_v2_key, order.sign_type)
        self._ledger.add_notification(
            kind="payment_v2",
            out_trade_no=order.out_trade_no,
            url=order.notify_url,
            body=body,
            content_type="text/xml",
            at=self._clock.timestamp(),
        )
        self._on_notification()

    def _queue_v3_notification(self, order: Order) -> None:
        body = build_notification(
            transaction(order),
            self._creds.api_v3_key,
            notification_id=str(uuid.uuid4()),
            create_time=self._clock.now(),
            nonce=secrets.token_hex(6),
        )
        self._ledger.add_notification(
            kind="payment_v3",
            out_trade_no=order.out_trade_no,
            url=order.notify_url,
            body=body,
            content_type="application/json",
            at=self._clock.timestamp(),
        )
        self._on_notification()


def v2_notification_fields(order: Order) -> dict[str, str | int]:
    """The fields of a paid order's v2 payment notification (before signing)."""
    return {
        "appid": order.appid,
        "mch_id": order.mch_id,
        "device_info": order.device_info,
        "nonce_str": ids.nonce(),
        "openid": order.openid,
        "is_subscribe": "N",
        "trade_type": "NATIVE",
        "bank_type": order.bank_type,
        "total_fee": order.total_fee,
        "fee_type": order.fee_type,
        "cash_fee": order.total_fee,
        "transaction_id": order.transaction_id or "",
        "out_trade_no": order.out_trade_no,
        "attach": order.attach,
        "time_end": order.time_end,
    }
