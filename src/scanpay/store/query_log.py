"""The active-query log (Alembic revision 0013): one ``payment_queries`` row per query scanpay
made to WeChat Pay about a payment attempt (:mod:`scanpay.domain.query_log`).

One insert per query (the query itself is already a network call); read per order for the
console's timeline; pruned with accepted notifications (:mod:`scanpay.store.housekeeping`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import sqlalchemy as sa

from scanpay.domain.query_log import Asker, QueryRecord
from scanpay.store.tables import UtcDateTime, metadata

Runner = Callable[..., Awaitable[Any]]

payment_queries: Final = sa.Table(
    "payment_queries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("attempt_id", sa.String(40), nullable=False),
    sa.Column("order_id", sa.String(40), nullable=False),
    sa.Column("out_trade_no", sa.String(32), nullable=False),
    sa.Column("asked_at", UtcDateTime, nullable=False),
    sa.Column("asker", sa.String(16), nullable=False),
    sa.Column("api_version", sa.String(8), nullable=False),
    sa.Column("trade_state", sa.String(32), nullable=True),  # None: no answer (see error)
    sa.Column("transaction_id", sa.String(64), nullable=True),
    sa.Column("error", sa.String(128), nullable=True),
    sa.Column("verdict", sa.String(16), nullable=True),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Index("ix_payment_queries_order", "order_id", "asked_at"),
    sa.Index("ix_payment_queries_asked_at", "asked_at"),
)

PQ = payment_queries.c


def _cut(value: str | None, size: int) -> str | None:
    return None if value is None else value[:size]


class SqlQueryLog:
    """The :class:`~scanpay.domain.query_log.QueryRecorder` on SQL, and its reader.
    ``run`` runs a blocking call off the event loop (the store's own ``_run``)."""

    def __init__(self, engine: sa.Engine, run: Runner) -> None:
        self.engine = engine
        self._run = run

    def record_sync(self, record: QueryRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(payment_queries).values(
                    attempt_id=record.attempt_id,
                    order_id=record.order_id,
                    out_trade_no=record.out_trade_no,
                    asked_at=record.asked_at,
                    asker=record.asker.value,
                    api_version=record.api_version,
                    trade_state=_cut(record.trade_state, 32),
                    transaction_id=_cut(record.transaction_id, 64),
                    error=_cut(record.error, 128),
                    verdict=_cut(record.verdict, 16),
                    reason=_cut(record.reason, 64),
                )
            )

    async def record_query(self, record: QueryRecord) -> None:
        await self._run(self.record_sync, record)

    def for_order(self, order_id: str, limit: int = 500) -> list[QueryRecord]:
        """The order's queries, oldest first (the newest ``limit`` of them)."""
        query = (
            sa.select(payment_queries)
            .where(PQ.order_id == order_id)
            .order_by(PQ.asked_at.desc(), PQ.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
        return [
            QueryRecord(
                attempt_id=row.attempt_id,
                order_id=row.order_id,
                out_trade_no=row.out_trade_no,
                asked_at=row.asked_at,
                asker=Asker(row.asker),
                api_version=row.api_version,
                trade_state=row.trade_state,
                transaction_id=row.transaction_id,
                error=row.error,
                verdict=row.verdict,
                reason=row.reason,
            )
            for row in reversed(rows)
        ]
