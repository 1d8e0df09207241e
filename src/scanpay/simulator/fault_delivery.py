"""One round of notification deliveries with the active faults applied.

Per notification that is due (faults of its order on top of the active ones):

* ``delay_notifications``: the first attempt is put off by N simulated seconds (once);
* ``drop_notifications``: drawn once, at the first attempt; a dropped notification is logged
  (status ``dropped``, an attempt whose error says so) and never sent nor retried;
* ``duplicate_notifications``: every attempt is sent N times, the copies of a round all at
  once (up to :data:`MAX_PARALLEL` in flight), as when several WeChat servers deliver the same
  notification; one log entry per attempt, acknowledged if any copy was;
* ``bad_signature`` / ``garbage_signature``: the first N attempts carry a wrong signature
  (v2: a wrong ``sign`` in the XML; v3: ``WECHATPAY/SIGNTEST/...`` or garbage), the retries on
  WeChat's schedule are signed correctly;
* ``stale_timestamp`` / ``unknown_serial`` / ``new_merchant``: the v3 signature headers;
* ``reorder_notifications``: every copy of the round is sent in random order.

With no fault active a round is exactly the notifier's plain one.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Final

from scanpay.errors import MalformedMessageError
from scanpay.simulator import faults as fault_mod
from scanpay.simulator.clock import SimClock
from scanpay.simulator.faults import Fault, Faults, FaultSpec, Scope
from scanpay.simulator.ledger import Attempt, Ledger, Notification
from scanpay.simulator.notifier import Notifier
from scanpay.wechat.xmlcodec import dump_xml, parse_xml

Copy = tuple[int | None, bytes, str]
MAX_PARALLEL: Final = 64


def bad_v2_body(body: bytes, *, garbage: bool) -> bytes:
    """The same v2 XML with a ``sign`` that does not match (or is not even hex)."""
    try:
        fields = parse_xml(body)
    except MalformedMessageError:
        return body + b"<!-- tampered -->"
    fields["sign"] = "garbage!" if garbage else secrets.token_hex(16).upper()
    return dump_xml(fields)


class FaultyDelivery:
    """``Notifier.deliver_round`` with faults; built once per simulator."""

    def __init__(self, notifier: Notifier, faults: Faults, ledger: Ledger, clock: SimClock) -> None:
        self._notifier = notifier
        self._faults = faults
        self._ledger = ledger
        self._clock = clock

    def _hold(self, note: Notification, until: float) -> None:
        with self._ledger.transaction() as db:
            db.execute("UPDATE notifications SET next_at = ? WHERE id = ?", (until, note.id))

    def _drop(self, note: Notification, at: float) -> None:
        self._ledger.record_attempt(
            Attempt(
                notification_id=note.id,
                number=note.attempts + 1,
                at=at,
                http_status=None,
                answer="",
                acknowledged=False,
                error="dropped by the drop_notifications fault: never sent",
            ),
            status="dropped",
            next_at=None,
        )

    def _signature_faults(
        self, note: Notification, fired: dict[Fault, FaultSpec]
    ) -> dict[Fault, FaultSpec]:
        """Bad signatures only for the first N attempts; other faults as they fired."""
        number = note.attempts + 1
        return {
            fault: spec
            for fault, spec in fired.items()
            if fault not in (Fault.BAD_SIGNATURE, Fault.GARBAGE_SIGNATURE) or number <= spec.value
        }

    async def _send(self, note: Notification, fired: dict[Fault, FaultSpec]) -> Copy:
        body: bytes | None = None
        tamper: Callable[[dict[str, str]], None] | None = None
        if note.kind.endswith("_v3"):

            def tamper(headers: dict[str, str]) -> None:
                fault_mod.tamper_signature(fired, headers)

        elif Fault.GARBAGE_SIGNATURE in fired or Fault.BAD_SIGNATURE in fired:
            body = bad_v2_body(note.body, garbage=Fault.GARBAGE_SIGNATURE in fired)
        with fault_mod.applying(fired):  # the v3 signer reads stale/unknown serial from here
            return await self._notifier.post(note, body=body, tamper=tamper)

    async def __call__(self, due: list[Notification]) -> None:
        now = self._clock.timestamp()
        sends: list[tuple[Notification, dict[Fault, FaultSpec]]] = []
        reorder = False
        held = 0  # delayed or dropped this round
        for note in due:
            fired = self._faults.fire(Scope.NOTIFICATIONS, out_trade_no=note.out_trade_no)
            first = note.attempts == 0
            delay = fired.get(Fault.DELAY_NOTIFICATIONS)
            if first and delay is not None and note.id not in self._faults.delayed:
                self._faults.delayed.add(note.id)
                self._hold(note, now + delay.value)
                self._faults.note(Fault.DELAY_NOTIFICATIONS, notification=note.id, by=delay.value)
                held += 1
                continue
            if first and Fault.DROP_NOTIFICATIONS in fired:
                self._drop(note, now)
                self._faults.note(Fault.DROP_NOTIFICATIONS, notification=note.id)
                held += 1
                continue
            reorder = reorder or Fault.REORDER_NOTIFICATIONS in fired
            copies = fired.get(Fault.DUPLICATE_NOTIFICATIONS)
            count = int(copies.value) if copies is not None else 1
            if count > 1:
                self._faults.note(Fault.DUPLICATE_NOTIFICATIONS, notification=note.id, copies=count)
            signed = self._signature_faults(note, fired)
            for name in (Fault.BAD_SIGNATURE, Fault.GARBAGE_SIGNATURE):
                if name in signed:
                    self._faults.note(name, notification=note.id, attempt=note.attempts + 1)
            sends.extend((note, signed) for _ in range(count))
        if reorder:
            self._faults.shuffle(sends)
        answers: dict[int, list[Copy]] = {}
        if len(sends) > len(due) - held:  # duplicates: copies arrive at once, as from
            gate = asyncio.Semaphore(MAX_PARALLEL)  # several WeChat servers

            async def send(note: Notification, fired: dict[Fault, FaultSpec]) -> Copy:
                async with gate:
                    return await self._send(note, fired)

            results = await asyncio.gather(*(send(note, fired) for note, fired in sends))
            for (note, _), copy in zip(sends, results, strict=True):
                answers.setdefault(note.id, []).append(copy)
        else:
            for note, fired in sends:
                answers.setdefault(note.id, []).append(await self._send(note, fired))
        for note in due:
            if note.id in answers:
                self._notifier.record(note, now, answers[note.id])
