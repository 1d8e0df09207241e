"""The simulator's ledger: orders, payment attempts and notification deliveries in SQLite.

One file per state directory (``DIR/ledger.sqlite3``, WAL) or an in-memory database. Every
write is one transaction; state changes are compare-and-set on the current ``trade_state``,
so a payment and a close racing each other cannot both win. Times are simulated epoch seconds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from scanpay.simulator import ids
from scanpay.wechat.states import SignType, TradeState

LEDGER_FILE: Final = "ledger.sqlite3"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS orders (
    out_trade_no TEXT PRIMARY KEY,
    appid TEXT NOT NULL,
    mch_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attach TEXT NOT NULL,
    total_fee INTEGER NOT NULL,
    fee_type TEXT NOT NULL,
    notify_url TEXT NOT NULL,
    product_id TEXT NOT NULL,
    device_info TEXT NOT NULL,
    time_expire TEXT NOT NULL,
    sign_type TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    prepay_id TEXT NOT NULL,
    code_url TEXT NOT NULL UNIQUE,
    code_issued_at REAL NOT NULL,
    trade_state TEXT NOT NULL,
    transaction_id TEXT UNIQUE,
    openid TEXT NOT NULL DEFAULT '',
    bank_type TEXT NOT NULL DEFAULT '',
    time_end TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    api TEXT NOT NULL DEFAULT 'v2',
    signer TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    out_trade_no TEXT NOT NULL REFERENCES orders(out_trade_no),
    outcome TEXT NOT NULL,
    at REAL NOT NULL,
    trade_state TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    out_trade_no TEXT NOT NULL,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    content_type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications(status, next_at);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id INTEGER NOT NULL REFERENCES notifications(id),
    number INTEGER NOT NULL,
    at REAL NOT NULL,
    http_status INTEGER,
    answer TEXT NOT NULL,
    acknowledged INTEGER NOT NULL,
    error TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Order:
    out_trade_no: str
    appid: str
    mch_id: str
    body: str
    attach: str
    total_fee: int
    fee_type: str
    notify_url: str
    product_id: str
    device_info: str
    time_expire: str
    sign_type: SignType
    fingerprint: str
    prepay_id: str
    code_url: str
    code_issued_at: float
    trade_state: TradeState
    transaction_id: str | None
    openid: str
    bank_type: str
    time_end: str
    created_at: float
    updated_at: float
    #: "v2" or "v3": which API created the order (and so how it is notified)
    api: str = "v2"
    #: v3 only: "public_key" or "platform", the key the merchant verifies WeChat with
    signer: str = ""

    @classmethod
    def opened(cls, now: datetime, **given: Any) -> Order:
        """A new order as prepay makes it: unpaid, with a fresh prepay_id and code_url issued
        ``now``; ``given``: the merchant's fields (out_trade_no, amounts, urls...)."""
        stamp = now.timestamp()
        return cls(
            prepay_id=ids.prepay_id(now),
            code_url=ids.code_url(),
            code_issued_at=stamp,
            trade_state=TradeState.NOTPAY,
            transaction_id=None,
            openid="",
            bank_type="",
            time_end="",
            created_at=stamp,
            updated_at=stamp,
            **given,
        )

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Order:
        values: dict[str, Any] = dict(row)
        values["sign_type"] = SignType(values["sign_type"])
        values["trade_state"] = TradeState(values["trade_state"])
        return cls(**values)


@dataclass(frozen=True)
class Notification:
    id: int
    kind: str
    out_trade_no: str
    url: str
    body: bytes
    content_type: str
    status: str
    attempts: int
    next_at: float | None
    created_at: float


@dataclass(frozen=True)
class Attempt:
    notification_id: int
    number: int
    at: float
    http_status: int | None
    answer: str
    acknowledged: bool
    error: str


class Ledger:
    """Thread-safe access to one SQLite ledger."""

    def __init__(self, state_dir: Path | None) -> None:
        target = ":memory:" if state_dir is None else str(state_dir / LEDGER_FILE)
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        if state_dir is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._upgrade()

    def _upgrade(self) -> None:
        """Add columns that ledgers written by earlier versions lack."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(orders)")}
        for name in ("api TEXT NOT NULL DEFAULT 'v2'", "signer TEXT NOT NULL DEFAULT ''"):
            if name.split()[0] not in columns:
                self._db.execute(f"ALTER TABLE orders ADD COLUMN {name}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: object) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    # for modules that keep their own tables in this ledger (scanpay.simulator.refunds) ------

    def ensure_schema(self, script: str) -> None:
        """Create extra tables (``CREATE TABLE IF NOT EXISTS ...``) in this ledger."""
        with self._lock:
            self._db.executescript(script)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``, rolled back on error)."""
        with self._tx() as db:
            yield db

    def fetch_one(self, sql: str, *args: object) -> sqlite3.Row | None:
        return self._one(sql, *args)

    def fetch_all(self, sql: str, *args: object) -> list[sqlite3.Row]:
        with self._lock:
            rows: list[sqlite3.Row] = self._db.execute(sql, args).fetchall()
            return rows

    # orders -------------------------------------------------------------------------------

    def insert_order(self, order: Order) -> None:
        values = order.__dict__.copy()
        values["sign_type"] = order.sign_type.value
        values["trade_state"] = order.trade_state.value
        names = ", ".join(values)
        marks = ", ".join(f":{name}" for name in values)
        with self._tx() as db:
            db.execute(f"INSERT INTO orders ({names}) VALUES ({marks})", values)

    def order(self, out_trade_no: str) -> Order | None:
        row = self._one("SELECT * FROM orders WHERE out_trade_no = ?", out_trade_no)
        return Order.from_row(row) if row else None

    def order_by_code_url(self, code_url: str) -> Order | None:
        row = self._one("SELECT * FROM orders WHERE code_url = ?", code_url)
        return Order.from_row(row) if row else None

    def order_by_transaction_id(self, transaction_id: str) -> Order | None:
        row = self._one("SELECT * FROM orders WHERE transaction_id = ?", transaction_id)
        return Order.from_row(row) if row else None

    def orders(self) -> list[Order]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM orders ORDER BY created_at").fetchall()
        return [Order.from_row(row) for row in rows]

    def reissue_code(self, out_trade_no: str, *, code_url: str, prepay_id: str, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE orders SET code_url = ?, prepay_id = ?, code_issued_at = ?, updated_at = ?"
                " WHERE out_trade_no = ?",
                (code_url, prepay_id, at, at, out_trade_no),
            )

    def transition(
        self,
        out_trade_no: str,
        *,
        expected: TradeState,
        new: TradeState,
        at: float,
        **columns: str,
    ) -> bool:
        """Compare-and-set the trade state (plus payer columns); False when another won."""
        sets = "".join(f", {name} = :{name}" for name in columns)
        params: dict[str, object] = {
            **columns,
            "new": new.value,
            "expected": expected.value,
            "at": at,
            "no": out_trade_no,
        }
        with self._tx() as db:
            cursor = db.execute(
                f"UPDATE orders SET trade_state = :new, updated_at = :at{sets}"
                " WHERE out_trade_no = :no AND trade_state = :expected",
                params,
            )
            return cursor.rowcount == 1

    def record_payment(
        self, out_trade_no: str, outcome: str, at: float, state: TradeState, message: str
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO payments (out_trade_no, outcome, at, trade_state, message)"
                " VALUES (?, ?, ?, ?, ?)",
                (out_trade_no, outcome, at, state.value, message),
            )

    def payments(self, out_trade_no: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT outcome, at, trade_state, message FROM payments WHERE out_trade_no = ?"
                " ORDER BY id",
                (out_trade_no,),
            ).fetchall()
        return [dict(row) for row in rows]

    # notifications ------------------------------------------------------------------------

    def add_notification(
        self, *, kind: str, out_trade_no: str, url: str, body: bytes, content_type: str, at: float
    ) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO notifications"
                " (kind, out_trade_no, url, body, content_type, status, next_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                (kind, out_trade_no, url, body, content_type, at, at),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def due_notifications(self, now: float) -> list[Notification]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM notifications WHERE status = 'pending' AND next_at <= ?"
                " ORDER BY next_at, id",
                (now,),
            ).fetchall()
        return [Notification(**dict(row)) for row in rows]

    def next_due(self) -> float | None:
        row = self._one("SELECT MIN(next_at) AS at FROM notifications WHERE status = 'pending'")
        return None if row is None or row["at"] is None else float(row["at"])

    def record_attempt(self, attempt: Attempt, *, status: str, next_at: float | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO attempts"
                " (notification_id, number, at, http_status, answer, acknowledged, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    attempt.notification_id,
                    attempt.number,
                    attempt.at,
                    attempt.http_status,
                    attempt.answer,
                    int(attempt.acknowledged),
                    attempt.error,
                ),
            )
            db.execute(
                "UPDATE notifications SET attempts = ?, status = ?, next_at = ? WHERE id = ?",
                (attempt.number, status, next_at, attempt.notification_id),
            )

    def notifications(self) -> list[tuple[Notification, list[Attempt]]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM notifications ORDER BY id").fetchall()
            attempt_rows = self._db.execute("SELECT * FROM attempts ORDER BY id").fetchall()
        attempts: dict[int, list[Attempt]] = {}
        for row in attempt_rows:
            values = dict(row)
            values.pop("id")
            values["acknowledged"] = bool(values["acknowledged"])
            attempts.setdefault(values["notification_id"], []).append(Attempt(**values))
        return [(Notification(**dict(row)), attempts.get(row["id"], [])) for row in rows]
