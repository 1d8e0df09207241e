"""``scanpay doctor``: the simulator plays WeChat Pay against a shop's notification handler.

The shop created an unpaid order at the simulator (v2 or v3); its ``notify_url`` is the
handler under test. :class:`Doctor` sends that URL a series of notifications and judges each
answer the way WeChat Pay would read it (v2: HTTP 200 with ``return_code=SUCCESS`` XML; v3:
HTTP 200 or 204 acknowledges, anything else is a refusal):

* **refuse** (must not be acknowledged): a bad signature, a signature by another key, a stale
  timestamp and an unknown serial (v3), a truncated or malformed body, an XML entity (v2);
* **ignore** (refused, or acknowledged without acting): validly signed notifications for
  another amount, another ``mch_id``/``mchid``, another ``appid``, an unknown
  ``out_trade_no``;
* **acknowledge**: the genuine notification, then ten copies at once, again after a delay,
  and a newer attempt followed by an older one (out of order).

Every negative case is played while the order is still unpaid at the simulator, so a shop
that asks WeChat Pay (a query) before acting sees ``NOTPAY`` and has no reason to act. Then
the simulator pays the order (no notification of its own is queued) and plays the positive
cases. With a status URL, every case also reads the order's status before and after: a
refused or mismatching notification must leave it unchanged, the genuine one must make it
look paid, and copies of it must not change it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from scanpay.errors import InvalidTransitionError, NotFoundError, ValidationError
from scanpay.simulator import ids
from scanpay.simulator.ledger import Order
from scanpay.simulator.notifier import v2_acknowledges, v3_acknowledges
from scanpay.simulator.payer import v2_notification_fields
from scanpay.simulator.v3api import transaction
from scanpay.wechat.fields import format_v2_time
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import TradeState
from scanpay.wechat.v2.notify import build_payment_notification
from scanpay.wechat.v3.notify import build_notification
from scanpay.wechat.v3.verify import sign_response

if TYPE_CHECKING:
    from scanpay.simulator.core import Simulator

TIMEOUT_SECONDS: Final = 5.0  # WeChat Pay waits about this long for an answer
DUPLICATES: Final = 10
DEFAULT_DELAY_SECONDS: Final = 3.0
MAX_DELAY_SECONDS: Final = 120.0
MAX_ANSWER_CHARS: Final = 300
MAX_STATUS_CHARS: Final = 2000
STALE_SECONDS: Final = 600  # twice WeChat's 5-minute window
OLDER_ATTEMPT_SECONDS: Final = 120  # an earlier attempt, still inside the window
STATUS_POLL_SECONDS: Final = 3.0
USER_AGENT: Final = "Mozilla/4.0 (scanpay WeChat Pay simulator; doctor)"
PAID_WORDS: Final = frozenset({"paid", "success", "succeeded", "completed", "complete"})
STATUS_KEYS: Final = ("status", "state", "trade_state", "order_status", "payment_status")
PAID_TEXT: Final = re.compile(r"\b(paid|success|succeeded)\b", re.IGNORECASE)
UNPAID_TEXT: Final = re.compile(r"\b(unpaid|not[ _-]?paid|notpay)\b", re.IGNORECASE)

RETRY_NEXT: Final = (
    "retries in 15 s, then 15 s, 30 s, 3 min, 10 min ... (16 attempts over about 24 h); "
    "the payment stays unconfirmed in the shop meanwhile"
)
STOPS: Final = "stops sending it: the notification counts as delivered"
FORGED: Final = "nothing: WeChat Pay never sent this; it is what an attacker can send"


class Expect(StrEnum):
    REFUSE = "refuse"  # must not be acknowledged
    IGNORE = "ignore"  # refused, or acknowledged but not acted on
    ACKNOWLEDGE = "acknowledge"


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"  # could not be judged (no status URL)


@dataclass(frozen=True)
class Send:
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    http_status: int | None
    body: str
    error: str
    acknowledged: bool

    def describe(self) -> str:
        if self.http_status is None:
            return f"no answer ({self.error})"
        text = self.body.strip().replace("\n", " ")
        return f"HTTP {self.http_status} {text}" if text else f"HTTP {self.http_status}"


@dataclass
class CaseResult:
    name: str
    expect: Expect
    sent: str
    answers: list[Answer]
    wechat_next: str
    verdict: Verdict
    why: str
    status_before: str | None = None
    status_after: str | None = None
    status_note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expect": self.expect.value,
            "sent": self.sent,
            "answers": [dataclasses.asdict(a) for a in self.answers],
            "acknowledged": sum(a.acknowledged for a in self.answers),
            "wechat_next": self.wechat_next,
            "status_before": self.status_before,
            "status_after": self.status_after,
            "status_note": self.status_note,
            "verdict": self.verdict.value,
            "why": self.why,
        }


@dataclass
class Report:
    api: str
    out_trade_no: str
    notify_url: str
    status_url: str | None
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(case.verdict is not Verdict.FAIL for case in self.cases)

    def to_json(self) -> dict[str, Any]:
        counts = {v.value: sum(c.verdict is v for c in self.cases) for v in Verdict}
        return {
            "ok": self.ok,
            "api": self.api,
            "out_trade_no": self.out_trade_no,
            "notify_url": self.notify_url,
            "status_url": self.status_url,
            "summary": counts,
            "cases": [case.to_json() for case in self.cases],
        }


# What each case is about, and why it matters (shown in the report).
WHY: Final = {
    "bad_signature": "a handler that accepts a wrong signature lets anyone mark orders paid",
    "other_key": "only the merchant's own key (v2) or WeChat Pay's key (v3) may sign",
    "stale_timestamp": "an old signed notification replayed later must not be taken as new",
    "unknown_serial": "a serial you do not trust names a key you cannot check",
    "truncated_body": "a cut-off body is not the message WeChat Pay signed",
    "malformed_resource": "a body that cannot be decrypted and parsed cannot be trusted",
    "xml_entity": "DOCTYPEs and entities are the XXE / billion-laughs attack surface; WeChat "
    "Pay never sends them",
    "xml_external_entity": "a parser that fetches external entities reads local files (XXE); "
    "WeChat Pay never sends them",
    "wrong_amount": "the amount paid must equal the order's amount before the goods go out",
    "other_mch_id": "a notification for another merchant account is not a payment to you",
    "other_appid": "a notification for another app is not a payment for this order",
    "unknown_out_trade_no": "an order you do not have must not change any order",
    "genuine": "the real notification must be acknowledged, or WeChat Pay keeps retrying",
    "duplicates": "WeChat Pay may deliver the same notification several times, even at "
    "once; each must be acknowledged and the order handled once",
    "after_delay": "a retry arriving later must be acknowledged and change nothing",
    "out_of_order": "attempts can arrive out of order; an older one after a newer one must "
    "still be acknowledged and change nothing",
}


def looks_paid(text: str) -> bool:
    """Whether an order-status document says paid (JSON ``status``/``state``... or text)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, dict):
        if value.get("paid") is True:
            return True
        for key in STATUS_KEYS:
            found = value.get(key)
            if isinstance(found, str) and found.strip().lower() in PAID_WORDS:
                return True
        return False
    if isinstance(value, bool):
        return value
    words = str(value)
    return bool(PAID_TEXT.search(words)) and not UNPAID_TEXT.search(words)


class Doctor:
    """Runs the cases for one order; ``http`` reaches the shop (notify and status URLs)."""

    def __init__(
        self,
        sim: Simulator,
        http: httpx.AsyncClient,
        *,
        delay_seconds: float = DEFAULT_DELAY_SECONDS,
        status_url: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._sim = sim
        self._http = http
        self._delay = delay_seconds
        self._status_template = status_url
        self._wall = wall_clock
        self._status_stable = True
        self._current_status_url = ""
        self._order: Order | None = None

    # preconditions ------------------------------------------------------------------------

    def check_order(self, out_trade_no: str, api: str | None) -> Order:
        order = self._sim.ledger.order(out_trade_no)
        if order is None:
            raise NotFoundError(
                f"the simulator has no order {out_trade_no!r}: let the shop create one first",
                code="ORDER_NOT_EXIST",
            )
        if api is not None and api != order.api:
            raise ValidationError(
                f"order {out_trade_no!r} was created with API {order.api}, not {api}",
                code="API_MISMATCH",
            )
        if order.trade_state is not TradeState.NOTPAY:
            raise InvalidTransitionError(
                f"order {out_trade_no!r} is {order.trade_state.value}; the doctor needs an "
                "unpaid order (create a fresh one)",
                code="ORDER_NOT_PAYABLE",
            )
        self._sim.payer.find(out_trade_no=out_trade_no)  # expired orders are refused too
        return order

    # running ------------------------------------------------------------------------------

    async def run(self, out_trade_no: str, api: str | None = None) -> Report:
        order = self.check_order(out_trade_no, api)
        status_url = self._status_url(order)
        self._current_status_url = status_url or ""
        self._order = order
        report = Report(order.api, order.out_trade_no, order.notify_url, status_url)
        if status_url is not None:
            first, second = await self._status(), await self._status()
            if not first.startswith("2"):
                raise ValidationError(
                    f"the status URL {status_url} does not answer 2xx ({first[:120]!r}); "
                    "nothing was sent",
                    code="STATUS_URL_UNUSABLE",
                )
            self._status_stable = first == second
            if looks_paid(second):
                raise InvalidTransitionError(
                    f"the status URL already says paid ({second[:200]!r}) before any "
                    "notification; point it at this order",
                    code="STATUS_ALREADY_PAID",
                )
        v3 = order.api == "v3"
        negatives = self._v3_negatives(order) if v3 else self._v2_negatives(order)
        for name, expect, sent, send in negatives:
            case = await self._judge(name, expect, sent, [send])
            if not report.cases and all(a.http_status is None for a in case.answers):
                raise ValidationError(
                    f"the order's notify_url {order.notify_url} cannot be reached "
                    f"({case.answers[0].error}); nothing else was sent",
                    code="NOTIFY_URL_UNREACHABLE",
                )
            report.cases.append(case)
        paid = self._sim.payer.pay_without_notification(order.out_trade_no)
        for result in await self._positives(paid):
            report.cases.append(result)
        return report

    def _status_url(self, order: Order) -> str | None:
        if not self._status_template:
            return None
        return self._status_template.replace("{out_trade_no}", quote(order.out_trade_no, safe=""))

    async def _status(self) -> str:
        url = self._current_status_url
        for attempt in range(2):  # once more: the shop may have closed a kept-alive socket
            try:
                response = await self._http.get(url, timeout=TIMEOUT_SECONDS)
                break
            except httpx.HTTPError as exc:
                if attempt:
                    return f"(status URL unreachable: {type(exc).__name__})"
        return f"{response.status_code} {response.text[:MAX_STATUS_CHARS]}".strip()

    async def _post(self, url: str, send: Send, *, v3: bool) -> Answer:
        headers = {"User-Agent": USER_AGENT, **send.headers}
        try:
            response = await self._http.post(
                url, content=send.body, headers=headers, timeout=TIMEOUT_SECONDS
            )
        except httpx.HTTPError as exc:
            return Answer(None, "", f"{type(exc).__name__}: {exc}"[:MAX_ANSWER_CHARS], False)
        check = v3_acknowledges if v3 else v2_acknowledges
        acked = check(response.status_code, response.content)
        body = response.content.decode("utf-8", "replace")[:MAX_ANSWER_CHARS]
        return Answer(response.status_code, body, "", acked)

    async def _judge(
        self,
        name: str,
        expect: Expect,
        sent: str,
        sends: list[Send],
        *,
        concurrent: bool = False,
        before_status: str | None = None,
    ) -> CaseResult:
        order = self._order
        assert order is not None
        v3 = order.api == "v3"
        before = before_status
        if self._status_template and before is None:
            before = await self._status()
        if concurrent:
            answers = list(
                await asyncio.gather(*(self._post(order.notify_url, s, v3=v3) for s in sends))
            )
        else:
            answers = [await self._post(order.notify_url, s, v3=v3) for s in sends]
        after = await self._status() if self._status_template else None
        return self._verdict(name, expect, sent, answers, before, after)

    def _verdict(
        self,
        name: str,
        expect: Expect,
        sent: str,
        answers: list[Answer],
        before: str | None,
        after: str | None,
    ) -> CaseResult:
        acked = [a.acknowledged for a in answers]
        all_acked, none_acked = all(acked), not any(acked)
        unreachable = all(a.http_status is None for a in answers)
        changed = before is not None and after is not None and before != after
        became_paid = (
            before is not None
            and after is not None
            and looks_paid(after)
            and not looks_paid(before)
        )
        # While the order is unpaid at WeChat Pay, a negative case "acted" when the status
        # turned paid, or changed while saying paid (a second "payment"). Other changes (an
        # alert noted on the order) are allowed. A status that differs between two reads
        # with nothing sent cannot show changes at all.
        stable_change = changed and self._status_stable
        moved = became_paid or (stable_change and looks_paid(after or ""))
        why = WHY[name]
        note = ""
        if after is not None:
            note = "unchanged" if not changed else "changed"
            if became_paid:
                note = "changed to paid"
        if expect is Expect.REFUSE:
            nxt = FORGED
            if unreachable:
                verdict, reason = Verdict.FAIL, "the notification URL could not be reached"
            elif not none_acked:
                verdict, reason = Verdict.FAIL, "acknowledged a notification it must refuse"
            elif moved:
                verdict, reason = Verdict.FAIL, "refused it, but the order's status changed"
            else:
                verdict, reason = Verdict.PASS, "refused"
        elif expect is Expect.IGNORE:
            nxt = STOPS if all_acked else RETRY_NEXT
            if unreachable:
                verdict, reason = Verdict.FAIL, "the notification URL could not be reached"
            elif moved:
                verdict, reason = (
                    Verdict.FAIL,
                    "the order's status changed: the handler acted on it",
                )
            elif none_acked:
                verdict, reason = Verdict.PASS, "refused"
            elif after is None:
                verdict, reason = (
                    Verdict.WARN,
                    "acknowledged; whether it was acted on is unknown (give --status-url)",
                )
            else:
                verdict, reason = Verdict.PASS, "acknowledged without changing the order"
        else:
            nxt = STOPS if all_acked else RETRY_NEXT
            if not all_acked:
                count = len(answers) - sum(acked)
                verdict = Verdict.FAIL
                reason = f"{count} of {len(answers)} not acknowledged"
            elif name == "genuine" and after is not None and not looks_paid(after):
                verdict, reason = Verdict.FAIL, "acknowledged, but the status does not say paid"
            elif name != "genuine" and stable_change:
                verdict, reason = Verdict.FAIL, "acknowledged, but the order changed again"
            else:
                verdict, reason = Verdict.PASS, "acknowledged"
        return CaseResult(
            name=name,
            expect=expect,
            sent=sent,
            answers=answers,
            wechat_next=nxt,
            verdict=verdict,
            why=f"{reason}. {why[0].upper()}{why[1:]}.",
            status_before=before,
            status_after=after,
            status_note=note,
        )

    # the positive cases -------------------------------------------------------------------

    async def _positives(self, paid: Order) -> list[CaseResult]:
        self._order = paid
        v3 = paid.api == "v3"
        results: list[CaseResult] = []
        if v3:
            body = self._v3_body(transaction(paid))
            genuine = self._v3_send(body, paid)
        else:
            fields = v2_notification_fields(paid)
            body = self._v2_body(fields, paid)
            genuine = Send(body, {"Content-Type": "text/xml"})
        kind = "v3 TRANSACTION.SUCCESS" if v3 else "v2 payment notification"
        first = await self._judge(
            "genuine", Expect.ACKNOWLEDGE, f"the genuine {kind}, signed as WeChat Pay does",
            [genuine],
        )  # fmt: skip
        if first.status_after is not None and not looks_paid(first.status_after):
            # the shop may apply it in the background: give it a moment
            deadline = time.monotonic() + STATUS_POLL_SECONDS
            while time.monotonic() < deadline and not looks_paid(first.status_after or ""):
                await asyncio.sleep(0.2)
                first = dataclasses.replace(first, status_after=await self._status())
            first = self._verdict(
                "genuine", first.expect, first.sent, first.answers, first.status_before,
                first.status_after,
            )  # fmt: skip
        results.append(first)
        resign: Callable[[], Send] = (
            (lambda: self._v3_send(body, paid)) if v3 else (lambda: genuine)
        )
        results.append(
            await self._judge(
                "duplicates",
                Expect.ACKNOWLEDGE,
                f"the same notification {DUPLICATES} times at once",
                [resign() for _ in range(DUPLICATES)],
                concurrent=True,
            )
        )
        await asyncio.sleep(self._delay)
        results.append(
            await self._judge(
                "after_delay",
                Expect.ACKNOWLEDGE,
                f"the same notification again, {self._delay:g} s later (a retry)",
                [resign()],
            )
        )
        if v3:
            newer = self._v3_send(self._v3_body(transaction(paid)), paid)
            older = self._v3_send(body, paid, timestamp=int(self._wall()) - OLDER_ATTEMPT_SECONDS)
            sent = (
                "a newer attempt (new id, signed now), then the original one signed "
                f"{OLDER_ATTEMPT_SECONDS} s earlier"
            )
        else:
            refreshed = v2_notification_fields(paid)
            newer = Send(self._v2_body(refreshed, paid), {"Content-Type": "text/xml"})
            older = genuine
            sent = "a newer attempt (new nonce_str, re-signed), then the original bytes"
        results.append(await self._judge("out_of_order", Expect.ACKNOWLEDGE, sent, [newer, older]))
        return results

    # bodies -------------------------------------------------------------------------------

    def _v2_body(
        self, fields: dict[str, str | int], order: Order, key: Secret | None = None
    ) -> bytes:
        return build_payment_notification(
            fields, key or self._sim.credentials.api_v2_key, order.sign_type
        )

    def _v3_body(self, resource: Any, *, event_type: str | None = None) -> bytes:
        return build_notification(
            resource,
            self._sim.credentials.api_v3_key,
            notification_id=str(uuid.uuid4()),
            create_time=self._sim.clock.now(),
            nonce=secrets.token_hex(6),
            event_type=event_type,
        )

    def _v3_send(
        self,
        body: bytes,
        order: Order,
        *,
        timestamp: int | None = None,
        serial: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        signed_body: bytes | None = None,
    ) -> Send:
        own_serial, own_key = self._sim.v3.notification_key(order)
        headers = sign_response(
            body if signed_body is None else signed_body,
            serial=serial or own_serial,
            private_key=key or own_key,
            timestamp=int(self._wall()) if timestamp is None else timestamp,
            nonce=secrets.token_hex(16).upper(),
        )
        headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA256-RSA2048"
        headers["Content-Type"] = "application/json"
        return Send(body, headers)

    # the negative cases -------------------------------------------------------------------

    def _mismatches(self, order: Order) -> dict[str, tuple[str, dict[str, Any]]]:
        other_amount = order.total_fee + 1 if order.total_fee < 100_000_000 else 1
        return {
            "wrong_amount": (
                f"validly signed, but for {other_amount} fen instead of {order.total_fee}",
                {"total": other_amount},
            ),
            "other_mch_id": (
                "validly signed, but for another merchant id",
                {"mchid": "1900009999"},
            ),
            "other_appid": ("validly signed, but for another appid", {"appid": ids.appid()}),
            "unknown_out_trade_no": (
                "validly signed, for an out_trade_no the shop does not have",
                {"out_trade_no": f"doctor-{secrets.token_hex(8)}"},
            ),
        }

    def _pretend_paid(self, order: Order) -> Order:
        """The order as if paid (for building negative cases while it is still unpaid)."""
        now = self._sim.clock.now()
        return dataclasses.replace(
            order,
            trade_state=TradeState.SUCCESS,
            transaction_id=ids.transaction_id(now),
            openid=ids.openid(),
            bank_type="OTHERS",
            time_end=format_v2_time(now),
        )

    def _v2_negatives(self, order: Order) -> list[tuple[str, Expect, str, Send]]:
        self._order = order
        paid = self._pretend_paid(order)
        xml = {"Content-Type": "text/xml"}
        fields = v2_notification_fields(paid)
        genuine = self._v2_body(fields, paid)
        text = genuine.decode("utf-8")
        sign = re.search(r"<sign><!\[CDATA\[([0-9A-F]+)\]\]></sign>", text)
        assert sign is not None
        flipped = sign.group(1)[:-1] + ("0" if sign.group(1)[-1] != "0" else "1")
        bad = text.replace(sign.group(1), flipped).encode("utf-8")
        other_key = self._v2_body(fields, paid, Secret(ids.api_key()))
        truncated = genuine[: len(genuine) // 2]
        entity_fields = {**fields, "attach": "doctor-entity"}
        entity = self._v2_body(entity_fields, paid).decode("utf-8")
        entity = entity.replace(
            "<attach><![CDATA[doctor-entity]]></attach>", "<attach>&doc;</attach>"
        )
        entity_body = ('<!DOCTYPE xml [<!ENTITY doc "doctor-entity">]>' + entity).encode("utf-8")
        # an external entity that resolves to nothing: attach is then empty, which the
        # signature (made without attach) accepts, so only a parser that refuses it is safe
        bare = {key: value for key, value in fields.items() if key != "attach"}
        external = self._v2_body(bare, paid).decode("utf-8")
        external = external.replace("<xml>", "<xml><attach>&ext;</attach>", 1)
        external_body = (
            '<!DOCTYPE xml [<!ENTITY ext SYSTEM "file:///dev/null">]>' + external
        ).encode("utf-8")
        cases: list[tuple[str, Expect, str, Send]] = [
            ("bad_signature", Expect.REFUSE, "the genuine fields, one character of sign changed",
             Send(bad, xml)),
            ("other_key", Expect.REFUSE, "the genuine fields signed with another API v2 key",
             Send(other_key, xml)),
            ("truncated_body", Expect.REFUSE, "the genuine body cut in half",
             Send(truncated, xml)),
            ("xml_entity", Expect.REFUSE,
             "a DOCTYPE declaring an entity used in attach, signed over its expansion",
             Send(entity_body, xml)),
            ("xml_external_entity", Expect.REFUSE,
             "a DOCTYPE declaring an external entity (file:///dev/null) used in attach",
             Send(external_body, xml)),
        ]  # fmt: skip
        names = {"total": "total_fee", "mchid": "mch_id", "appid": "appid"}
        for name, (sent, change) in self._mismatches(order).items():
            changed = dict(fields)
            for key, value in change.items():
                changed[names.get(key, key)] = value
                if key == "total":
                    changed["cash_fee"] = value
            cases.append((name, Expect.IGNORE, sent, Send(self._v2_body(changed, paid), xml)))
        return cases

    def _v3_negatives(self, order: Order) -> list[tuple[str, Expect, str, Send]]:
        self._order = order
        paid = self._pretend_paid(order)
        resource = transaction(paid)
        body = self._v3_body(resource)
        genuine = self._v3_send(body, order)
        bad_headers = dict(genuine.headers)
        signature = bad_headers["Wechatpay-Signature"]
        bad_headers["Wechatpay-Signature"] = ("B" if signature[0] != "B" else "C") + signature[1:]
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        own_serial, _ = self._sim.v3.notification_key(order)
        unknown = (
            ids.public_key_id()
            if own_serial.startswith("PUB_KEY_ID_")
            else secrets.token_hex(20).upper()
        )
        envelope = json.loads(body)
        ciphertext = envelope["resource"]["ciphertext"]
        envelope["resource"]["ciphertext"] = ("A" if ciphertext[0] != "A" else "B") + ciphertext[1:]
        tampered = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        cases: list[tuple[str, Expect, str, Send]] = [
            ("bad_signature", Expect.REFUSE, "the genuine body with Wechatpay-Signature changed",
             Send(body, bad_headers)),
            ("other_key", Expect.REFUSE,
             "the genuine body signed by another RSA key under the right serial",
             self._v3_send(body, order, key=stranger)),
            ("stale_timestamp", Expect.REFUSE,
             f"the genuine body signed with a Wechatpay-Timestamp {STALE_SECONDS // 60} min old",
             self._v3_send(body, order, timestamp=int(self._wall()) - STALE_SECONDS)),
            ("unknown_serial", Expect.REFUSE,
             f"the genuine body signed by an unknown key, Wechatpay-Serial {unknown}",
             self._v3_send(body, order, key=stranger, serial=unknown)),
            ("truncated_body", Expect.REFUSE,
             "the genuine body cut in half (headers signed over the whole body)",
             self._v3_send(body[: len(body) // 2], order, signed_body=body)),
            ("malformed_resource", Expect.REFUSE,
             "validly signed, but resource.ciphertext altered (AES-GCM cannot open it)",
             self._v3_send(tampered, order)),
        ]  # fmt: skip
        for name, (sent, change) in self._mismatches(order).items():
            values = dict(change)
            if "total" in values:
                values["payer_total"] = values["total"]
            altered = dataclasses.replace(resource, **values)
            cases.append((name, Expect.IGNORE, sent, self._v3_send(self._v3_body(altered), order)))
        return cases


async def run_doctor(
    sim: Simulator,
    out_trade_no: str,
    *,
    api: str | None = None,
    status_url: str | None = None,
    delay_seconds: float = DEFAULT_DELAY_SECONDS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Report:
    """Run every case against the notify_url of ``out_trade_no`` (see the module doc)."""
    if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
        raise ValidationError(f"delay_seconds must be between 0 and {MAX_DELAY_SECONDS:g}")
    if status_url is not None and not status_url.startswith(("http://", "https://")):
        raise ValidationError("status_url must be an http:// or https:// URL")
    # a fresh connection per request, as WeChat Pay's deliveries are: a handler that drops
    # its connection after an error must not make the next case look unreachable
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(
        transport=transport, follow_redirects=False, limits=no_reuse
    ) as http:
        doctor = Doctor(
            sim,
            http,
            delay_seconds=delay_seconds,
            status_url=status_url,
            wall_clock=sim.signature_time,
        )
        return await doctor.run(out_trade_no, api)
