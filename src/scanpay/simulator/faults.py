"""Faults the simulator can inject, how they are written down, and the registry that holds them.

A fault is a name and a number (:class:`FaultSpec`), optionally limited to ``times`` firings,
to request paths starting with ``path``, and to one ``scope`` (``api`` answers or
``notifications``). Written as text (CLI flag, ``X-Sim-Fault`` header)::

    name[=value][:times][@scope]      e.g.  drop_notifications=0.3   system_error=1:2@api

or as JSON (``POST /sim/faults``): ``{"name": value}`` or ``{"name": {"value": v, "times": n,
"path": "/v3/", "scope": "api"}}``. Names and values:

===========================  =================================================================
``drop_notifications``       probability a notification is never delivered (default 1)
``duplicate_notifications``  copies sent per delivery attempt (default 2)
``delay_notifications``      simulated seconds the first attempt is held back (default 60)
``reorder_notifications``    deliver what is due in random order
``bad_signature``            notifications: the first N attempts badly signed (v2 wrong
                             ``sign``, v3 ``WECHATPAY/SIGNTEST/``); v3 answers: a probe signature
``garbage_signature``        as ``bad_signature`` with a signature that is not even base64
``stale_timestamp``          v3 answers and notifications signed N seconds in the past (600)
``unknown_serial``           v3 answers and notifications name a serial nobody was given
``system_error``             probability an API call answers SYSTEMERROR / 500 SYSTEM_ERROR
``http_5xx``                 probability an API call answers a bare HTTP 503 (no signature)
``frequency_limited``        probability an API call answers FREQUENCY_LIMITED / 429
``slow``                     real seconds an API answer waits (at most :data:`MAX_SLOW`)
``lost_answer``              probability an API call is carried out but its answer is lost:
                             the caller gets a bare HTTP 504 (no signature)
``new_merchant``             ``/v3/certificates`` lists nothing; the public key signs everything
``rotate_certificate``       a new platform certificate after N simulated seconds (0: now)
``bill_missing``             bills leave out the order's payment (and its refunds)
``bill_amount``              bills show the order's payment N fen higher (default 1)
``bill_revoked``             bills show the order's payment as ``REVOKED``
``bill_refund_amount``       bills show the order's refunds N fen higher (default 1)
``bill_extra``               each day's bill gains N payments nobody ordered (default 1)
``bill_not_ready``           bills are "being generated": v2 ``Bill Creating``, v3
                             ``STATEMENT_CREATING`` (as before WeChat's 10:00)
===========================  =================================================================

The ``bill_*`` faults (:data:`BILL_FAULTS`) change only the bills (:mod:`.bills`), never an
answer or a notification: attached to one order (``X-Sim-Fault`` on its prepay call or on
``POST /sim/pay``) they touch that order's rows, set globally every row (``bill_extra``: the
day's bill).

:class:`Faults` keeps the active set, faults attached to single orders (from a header on the
prepay call or on ``POST /sim/pay``), a seedable random source (tests are deterministic) and
a short log of what fired. While a request or a notification is being answered, the faults
that apply to it are in a context variable that the v3 signer reads (:func:`adjust_signing`,
:func:`tamper_signature`).
"""

from __future__ import annotations

import base64
import random
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from scanpay.errors import ValidationError
from scanpay.wechat.v3.verify import PROBE_PREFIX, SIGNATURE


class Fault(StrEnum):
    DROP_NOTIFICATIONS = "drop_notifications"
    DUPLICATE_NOTIFICATIONS = "duplicate_notifications"
    DELAY_NOTIFICATIONS = "delay_notifications"
    REORDER_NOTIFICATIONS = "reorder_notifications"
    BAD_SIGNATURE = "bad_signature"
    GARBAGE_SIGNATURE = "garbage_signature"
    STALE_TIMESTAMP = "stale_timestamp"
    UNKNOWN_SERIAL = "unknown_serial"
    SYSTEM_ERROR = "system_error"
    HTTP_5XX = "http_5xx"
    FREQUENCY_LIMITED = "frequency_limited"
    SLOW = "slow"
    LOST_ANSWER = "lost_answer"
    NEW_MERCHANT = "new_merchant"
    ROTATE_CERTIFICATE = "rotate_certificate"
    BILL_MISSING = "bill_missing"
    BILL_AMOUNT = "bill_amount"
    BILL_REVOKED = "bill_revoked"
    BILL_REFUND_AMOUNT = "bill_refund_amount"
    BILL_EXTRA = "bill_extra"
    BILL_NOT_READY = "bill_not_ready"


class Scope(StrEnum):
    BOTH = ""
    API = "api"
    NOTIFICATIONS = "notifications"


DEFAULTS: Final[dict[Fault, float]] = {
    Fault.DROP_NOTIFICATIONS: 1.0,
    Fault.DUPLICATE_NOTIFICATIONS: 2,
    Fault.DELAY_NOTIFICATIONS: 60,
    Fault.REORDER_NOTIFICATIONS: 1,
    Fault.BAD_SIGNATURE: 1,
    Fault.GARBAGE_SIGNATURE: 1,
    Fault.STALE_TIMESTAMP: 600,
    Fault.UNKNOWN_SERIAL: 1,
    Fault.SYSTEM_ERROR: 1.0,
    Fault.HTTP_5XX: 1.0,
    Fault.FREQUENCY_LIMITED: 1.0,
    Fault.SLOW: 2.0,
    Fault.LOST_ANSWER: 1.0,
    Fault.NEW_MERCHANT: 1,
    Fault.ROTATE_CERTIFICATE: 0,
    Fault.BILL_MISSING: 1,
    Fault.BILL_AMOUNT: 1,
    Fault.BILL_REVOKED: 1,
    Fault.BILL_REFUND_AMOUNT: 1,
    Fault.BILL_EXTRA: 1,
    Fault.BILL_NOT_READY: 1,
}
PROBABILITIES: Final = frozenset(
    {
        Fault.DROP_NOTIFICATIONS,
        Fault.SYSTEM_ERROR,
        Fault.HTTP_5XX,
        Fault.FREQUENCY_LIMITED,
        Fault.LOST_ANSWER,
    }
)
NOTIFICATION_ONLY: Final = frozenset(
    {
        Fault.DROP_NOTIFICATIONS,
        Fault.DUPLICATE_NOTIFICATIONS,
        Fault.DELAY_NOTIFICATIONS,
        Fault.REORDER_NOTIFICATIONS,
    }
)
API_ONLY: Final = frozenset(
    {Fault.SYSTEM_ERROR, Fault.HTTP_5XX, Fault.FREQUENCY_LIMITED, Fault.SLOW, Fault.LOST_ANSWER}
)
BILL_FAULTS: Final = frozenset(
    {
        Fault.BILL_MISSING,
        Fault.BILL_AMOUNT,
        Fault.BILL_REVOKED,
        Fault.BILL_REFUND_AMOUNT,
        Fault.BILL_EXTRA,
        Fault.BILL_NOT_READY,
    }
)
MAX_SLOW: Final = 30.0
MAX_COPIES: Final = 64
UNKNOWN_SERIAL_NO: Final = "0" * 24 + "5CA7FA0175C0FFEE"
SCENARIOS: Final[dict[str, dict[str, float]]] = {
    # issue 5's run: 30% of notifications lost, the rest three times in random order
    "flaky_notifications": {
        "drop_notifications": 0.3,
        "duplicate_notifications": 3,
        "reorder_notifications": 1,
    },
    "signature_probes": {"bad_signature": 1},
    "unstable_api": {"system_error": 0.2, "http_5xx": 0.1, "frequency_limited": 0.1},
    "clock_skew": {"stale_timestamp": 600},
    "certificate_rotation": {"rotate_certificate": 0},
    "new_merchant": {"new_merchant": 1},
}
MAX_EVENTS: Final = 200


@dataclass(frozen=True)
class FaultSpec:
    fault: Fault
    value: float
    times: int | None = None  # None: until switched off
    path: str = ""  # request path prefix (API faults)
    scope: Scope = Scope.BOTH

    def __post_init__(self) -> None:
        if self.value < 0 or self.value != self.value:
            raise ValidationError(f"{self.fault.value}: value must be a non-negative number")
        if self.fault in PROBABILITIES and self.value > 1:
            raise ValidationError(f"{self.fault.value}: a probability is at most 1")
        if self.fault is Fault.DUPLICATE_NOTIFICATIONS and not 1 <= self.value <= MAX_COPIES:
            raise ValidationError(f"duplicate_notifications: 1 to {MAX_COPIES} copies")
        if self.times is not None and self.times < 1:
            raise ValidationError(f"{self.fault.value}: times must be at least 1")

    def applies_to(self, scope: Scope) -> bool:
        if scope is Scope.API and self.fault in NOTIFICATION_ONLY:
            return False
        if scope is Scope.NOTIFICATIONS and self.fault in API_ONLY:
            return False
        return self.scope in (Scope.BOTH, scope)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "times": self.times, "path": self.path, "scope": self.scope}


FaultSet = Mapping[Fault, FaultSpec]


def _fault(name: str) -> Fault:
    try:
        return Fault(name.strip())
    except ValueError:
        choices = ", ".join(f.value for f in Fault)
        raise ValidationError(f"unknown fault {name.strip()!r}; one of: {choices}") from None


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValidationError(f"{name}: {text!r} is not a number") from None


def parse_fault(text: str) -> FaultSpec:
    """``name[=value][:times][@scope]`` (CLI flags and the ``X-Sim-Fault`` header)."""
    rest, _, scope = text.strip().partition("@")
    rest, _, times = rest.partition(":")
    name, has_value, value = rest.partition("=")
    fault = _fault(name)
    try:
        scope_value = Scope(scope.strip())
    except ValueError:
        raise ValidationError(f"{fault.value}: scope must be api or notifications") from None
    return FaultSpec(
        fault,
        _number(value, fault.value) if has_value else DEFAULTS[fault],
        int(_number(times, fault.value)) if times else None,
        scope=scope_value,
    )


def parse_header(text: str) -> list[FaultSpec]:
    """An ``X-Sim-Fault`` value: faults separated by commas; ``scenario=NAME`` expands."""
    specs: list[FaultSpec] = []
    for part in (p for p in text.split(",") if p.strip()):
        name, _, value = part.partition("=")
        if name.strip() == "scenario":
            specs.extend(scenario(value.strip()))
        else:
            specs.append(parse_fault(part))
    return specs


def spec_from_json(name: str, value: object) -> FaultSpec:
    """One entry of a ``POST /sim/faults`` body."""
    fault = _fault(name)
    if value is None or value is True:
        return FaultSpec(fault, DEFAULTS[fault])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return FaultSpec(fault, float(value))
    if isinstance(value, dict):
        unknown = set(value) - {"value", "times", "path", "scope"}
        raw_value = value.get("value", DEFAULTS[fault])
        times, path, scope = value.get("times"), value.get("path", ""), value.get("scope", "")
        if (
            unknown
            or isinstance(raw_value, bool)
            or not isinstance(raw_value, int | float)
            or not (times is None or (isinstance(times, int) and not isinstance(times, bool)))
            or not isinstance(path, str)
            or scope not in {s.value for s in Scope}
        ):
            raise ValidationError(f"{fault.value}: expected value, times, path, scope")
        return FaultSpec(fault, float(raw_value), times, path, Scope(scope))
    raise ValidationError(f"{fault.value}: expected a number or an object")


def scenario(name: str) -> list[FaultSpec]:
    if name not in SCENARIOS:
        raise ValidationError(f"unknown scenario {name!r}; one of: {', '.join(SCENARIOS)}")
    return [spec_from_json(key, value) for key, value in SCENARIOS[name].items()]


# --- the faults that apply to what is being answered right now -----------------------------

_ACTIVE: ContextVar[FaultSet | None] = ContextVar("scanpay_sim_faults", default=None)


def active() -> FaultSet:
    return _ACTIVE.get() or {}


@contextmanager
def applying(faults: FaultSet) -> Iterator[None]:
    token = _ACTIVE.set(faults)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def adjust_signing(faults: FaultSet, serial: str, timestamp: int) -> tuple[str, int]:
    """The serial and timestamp a v3 signature should carry under ``faults``."""
    stale = faults.get(Fault.STALE_TIMESTAMP)
    if stale is not None:
        timestamp -= int(stale.value)
    if Fault.UNKNOWN_SERIAL in faults:
        serial = UNKNOWN_SERIAL_NO
    return serial, timestamp


def tamper_signature(faults: FaultSet, headers: dict[str, str]) -> None:
    """Replace a v3 ``Wechatpay-Signature`` by a probe or by garbage, if asked to."""
    if Fault.GARBAGE_SIGNATURE in faults:
        headers[SIGNATURE] = "garbage!" + secrets.token_hex(8)
    elif Fault.BAD_SIGNATURE in faults:
        probe = base64.b64encode(secrets.token_bytes(48)).decode("ascii")
        headers[SIGNATURE] = PROBE_PREFIX + probe


# --- the registry --------------------------------------------------------------------------


class Faults:
    """Active faults, faults of single orders, a seedable random source, a log of firings."""

    def __init__(self, seed: int | None = None) -> None:
        #: called after every change of the settings (scanpay.simulator.saved keeps them)
        self.on_change: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._global: dict[Fault, FaultSpec] = {}
        self._armed_at: dict[Fault, float] = {}
        self._orders: dict[str, dict[Fault, FaultSpec]] = {}
        self._random = random.Random(seed)
        self._seed = seed
        self.delayed: set[int] = set()
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def seed(self, seed: int | None) -> None:
        with self._lock:
            self._seed = seed
            self._random = random.Random(seed)
        self._changed()

    def draw(self) -> float:
        with self._lock:
            return self._random.random()

    def shuffle(self, items: list[Any]) -> None:
        with self._lock:
            self._random.shuffle(items)

    def set(self, specs: list[FaultSpec], *, now: float, replace_all: bool = False) -> None:
        with self._lock:
            if replace_all:
                self._global.clear()
            for spec in specs:
                self._global[spec.fault] = spec
                self._armed_at[spec.fault] = now
        if specs or replace_all:
            self._changed()

    def clear(self) -> None:
        with self._lock:
            self._global.clear()
            self._orders.clear()
            self.delayed.clear()
        self._changed()

    def for_order(self, out_trade_no: str, specs: list[FaultSpec]) -> None:
        """Faults for this order's notifications only (on top of the active ones)."""
        with self._lock:
            bucket = self._orders.setdefault(out_trade_no, {})
            bucket.update({spec.fault: spec for spec in specs})
        self._changed()

    def state(self) -> dict[str, Any]:
        """The settings (not the log) as JSON, for :meth:`restore` after a restart."""
        with self._lock:
            return {
                "faults": {f.value: s.to_json() for f, s in self._global.items()},
                "armed_at": {f.value: self._armed_at[f] for f in self._global},
                "orders": {
                    no: {f.value: s.to_json() for f, s in bucket.items()}
                    for no, bucket in self._orders.items()
                },
                "seed": self._seed,
            }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`state` saved (raises ValidationError when it is not that)."""
        table, orders = state.get("faults", {}), state.get("orders", {})
        armed, seed = state.get("armed_at", {}), state.get("seed")
        if not isinstance(table, dict) or not isinstance(orders, dict):
            raise ValidationError("saved faults: expected objects")
        if not isinstance(armed, dict) or not (seed is None or isinstance(seed, int)):
            raise ValidationError("saved faults: bad armed_at or seed")
        specs = {s.fault: s for s in (spec_from_json(n, v) for n, v in table.items())}
        buckets = {
            str(no): {s.fault: s for s in (spec_from_json(n, v) for n, v in bucket.items())}
            for no, bucket in orders.items()
            if isinstance(bucket, dict)
        }
        with self._lock:
            self._global = specs
            self._armed_at = {f: float(armed.get(f.value, 0.0)) for f in specs}
            self._orders = buckets
            self._seed = seed
            self._random = random.Random(seed)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "faults": {f.value: s.to_json() for f, s in self._global.items()},
                "orders": {
                    no: {f.value: s.to_json() for f, s in bucket.items()}
                    for no, bucket in self._orders.items()
                },
                "seed": self._seed,
                "events": list(self.events),
            }

    def note(self, fault: Fault, **detail: object) -> None:
        self.events.append({"fault": fault.value, **detail})

    def fire(
        self,
        scope: Scope,
        *,
        path: str = "",
        extra: list[FaultSpec] | None = None,
        out_trade_no: str = "",
    ) -> dict[Fault, FaultSpec]:
        """The faults that fire for one API answer or one notification attempt.

        Probabilities are drawn here; a global fault with ``times`` counts down and switches
        itself off at zero.
        """
        with self._lock:
            candidates: dict[Fault, FaultSpec] = {
                f: s
                for f, s in self._global.items()
                if f is not Fault.ROTATE_CERTIFICATE and f not in BILL_FAULTS
            }
            own: dict[Fault, FaultSpec] = {
                s.fault: s
                for s in self._orders.get(out_trade_no, {}).values()
                if s.fault not in BILL_FAULTS
            }
            own.update({s.fault: s for s in extra or []})
            candidates.update(own)
            fired: dict[Fault, FaultSpec] = {}
            counted = False
            for fault, spec in candidates.items():
                if not spec.applies_to(scope) or not path.startswith(spec.path):
                    continue
                if fault in PROBABILITIES and self._random.random() >= spec.value:
                    continue
                fired[fault] = spec
                if fault not in own and spec.times is not None:
                    counted = True
                    if spec.times <= 1:
                        del self._global[fault]
                    else:
                        self._global[fault] = replace(spec, times=spec.times - 1)
        if counted:
            self._changed()
        return fired

    def bill_faults(self, out_trade_no: str = "") -> dict[Fault, FaultSpec]:
        """The ``bill_*`` faults for an order's rows: the global ones, then its own."""
        with self._lock:
            found = {f: s for f, s in self._global.items() if f in BILL_FAULTS}
            own = self._orders.get(out_trade_no, {})
            found.update({f: s for f, s in own.items() if f in BILL_FAULTS})
            return found

    def due_rotation(self, now: float) -> bool:
        """True once when an armed ``rotate_certificate`` comes due (it then switches off)."""
        with self._lock:
            spec = self._global.get(Fault.ROTATE_CERTIFICATE)
            if spec is None or self._armed_at[Fault.ROTATE_CERTIFICATE] + spec.value > now:
                return False
            del self._global[Fault.ROTATE_CERTIFICATE]
        self._changed()
        return True
