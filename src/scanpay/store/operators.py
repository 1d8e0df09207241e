"""Operators, their sessions, sign-in throttling, the audit log and alert acknowledgements.

Blocking SQLAlchemy calls (the console runs them on a worker thread). A session is found by
the SHA-256 of its token; disabling an operator or changing a password ends their sessions in
the same transaction. Password hashes leave this module only through :meth:`credentials`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from scanpay.domain.model import EventType
from scanpay.domain.operators import Action, Operator, Role, check_name, check_note
from scanpay.errors import ConflictError, NotFoundError
from scanpay.store.console_tables import (
    alert_acks,
    operator_actions,
    operator_sessions,
    operators,
    sign_in_failures,
)
from scanpay.store.migrate import writer
from scanpay.store.tables import events


def _operator(row: Any) -> Operator:
    m = row._mapping
    return Operator(
        id=m["id"],
        name=m["name"],
        role=Role(m["role"]),
        disabled=bool(m["disabled"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


@dataclass(frozen=True)
class SessionRecord:
    operator: Operator
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class ActionRecord:
    id: int
    operator_name: str
    action: str
    target: str | None
    outcome: str
    detail: Mapping[str, Any]
    address: str
    created_at: datetime


@dataclass(frozen=True)
class Throttle:
    failures: int
    locked_until: datetime | None


_OPERATOR_COLUMNS = (
    operators.c.id,
    operators.c.name,
    operators.c.role,
    operators.c.disabled,
    operators.c.created_at,
    operators.c.updated_at,
)


class OperatorStore:
    """The console's accounts and records in the service's database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._writer = writer(engine)

    # ---- accounts ----------------------------------------------------------------------

    def add(self, name: str, role: Role, password_hash: str, now: datetime) -> Operator:
        values = {
            "name": check_name(name),
            "role": role.value,
            "password_hash": password_hash,
            "disabled": False,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._writer.begin() as conn:
                conn.execute(sa.insert(operators).values(values))
        except IntegrityError:
            raise ConflictError(
                f"an operator named {name!r} exists", code="OPERATOR_EXISTS"
            ) from None
        found = self.get(name)
        assert found is not None
        return found

    def get(self, name: str) -> Operator | None:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(*_OPERATOR_COLUMNS).where(operators.c.name == name)
            ).first()
        return None if row is None else _operator(row)

    def list_operators(self) -> list[Operator]:
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(*_OPERATOR_COLUMNS).order_by(operators.c.name)).all()
        return [_operator(row) for row in rows]

    def credentials(self, name: str) -> tuple[Operator, str] | None:
        """The operator and their password hash, for checking a sign-in."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(*_OPERATOR_COLUMNS, operators.c.password_hash).where(
                    operators.c.name == name
                )
            ).first()
        return None if row is None else (_operator(row), row.password_hash)

    def _change(self, name: str, now: datetime, **values: Any) -> Operator:
        with self._writer.begin() as conn:
            row = conn.execute(
                sa.update(operators)
                .where(operators.c.name == name)
                .values(updated_at=now, **values)
                .returning(operators.c.id)
            ).first()
            if row is None:
                raise NotFoundError(f"no operator named {name!r}", code="NO_SUCH_OPERATOR")
            conn.execute(
                sa.delete(operator_sessions).where(operator_sessions.c.operator_id == row.id)
            )
        found = self.get(name)
        assert found is not None
        return found

    def set_disabled(self, name: str, disabled: bool, now: datetime) -> Operator:
        """Disable (ending every session of theirs) or enable an operator."""
        return self._change(name, now, disabled=disabled)

    def set_password(self, name: str, password_hash: str, now: datetime) -> Operator:
        """A new password hash; every session of theirs ends."""
        return self._change(name, now, password_hash=password_hash)

    def rehash(self, operator_id: int, password_hash: str) -> None:
        """Store a stronger hash of the same password (no session ends)."""
        with self._writer.begin() as conn:
            conn.execute(
                sa.update(operators)
                .where(operators.c.id == operator_id)
                .values(password_hash=password_hash)
            )

    # ---- sign-in throttling ------------------------------------------------------------

    def throttle(self, name: str) -> Throttle:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(sign_in_failures).where(sign_in_failures.c.name == name.lower()[:64])
            ).first()
        return Throttle(0, None) if row is None else Throttle(row.failures, row.locked_until)

    def record_failure(
        self,
        name: str,
        now: datetime,
        *,
        lock_after: int,
        lock_for: timedelta,
        forget_after: timedelta,
    ) -> Throttle:
        """Count a failed sign-in for ``name``; lock it for ``lock_for`` at ``lock_after``
        failures. Failures older than ``forget_after`` start the count again."""
        key = name.lower()[:64]  # the same key as throttle() and clear_failures()
        with self._writer.begin() as conn:
            row = conn.execute(
                sa.select(sign_in_failures).where(sign_in_failures.c.name == key)
            ).first()
            failures = 1
            if row is not None and now - row.last_failed_at < forget_after:
                failures = row.failures + 1
            locked = now + lock_for if failures >= lock_after else None
            values = {"failures": failures, "last_failed_at": now, "locked_until": locked}
            if row is None:
                conn.execute(sa.insert(sign_in_failures).values(name=key, **values))
            else:
                conn.execute(
                    sa.update(sign_in_failures).where(sign_in_failures.c.name == key).values(values)
                )
        return Throttle(failures, locked)

    def clear_failures(self, name: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                sa.delete(sign_in_failures).where(sign_in_failures.c.name == name.lower()[:64])
            )

    # ---- sessions ----------------------------------------------------------------------

    def start_session(
        self,
        token_hash: str,
        operator_id: int,
        csrf_token: str,
        address: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        with self._writer.begin() as conn:
            conn.execute(sa.delete(operator_sessions).where(operator_sessions.c.expires_at < now))
            conn.execute(
                sa.insert(operator_sessions).values(
                    token_hash=token_hash,
                    operator_id=operator_id,
                    csrf_token=csrf_token,
                    address=address[:64],
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires_at,
                )
            )

    def session(self, token_hash: str) -> SessionRecord | None:
        query = (
            sa.select(
                *_OPERATOR_COLUMNS,
                operator_sessions.c.csrf_token,
                operator_sessions.c.created_at.label("session_created_at"),
                operator_sessions.c.last_seen_at,
                operator_sessions.c.expires_at,
            )
            .join(operators, operators.c.id == operator_sessions.c.operator_id)
            .where(operator_sessions.c.token_hash == token_hash)
        )
        with self.engine.begin() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return SessionRecord(
            operator=_operator(row),
            csrf_token=row.csrf_token,
            created_at=row.session_created_at,
            last_seen_at=row.last_seen_at,
            expires_at=row.expires_at,
        )

    def touch_session(self, token_hash: str, now: datetime) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                sa.update(operator_sessions)
                .where(operator_sessions.c.token_hash == token_hash)
                .values(last_seen_at=now)
            )

    def end_session(self, token_hash: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                sa.delete(operator_sessions).where(operator_sessions.c.token_hash == token_hash)
            )

    # ---- the audit log -----------------------------------------------------------------

    def record_action(
        self,
        operator: Operator | None,
        name: str,
        action: Action,
        target: str | None,
        outcome: str,
        detail: Mapping[str, Any],
        address: str,
        now: datetime,
    ) -> None:
        with self._writer.begin() as conn:
            conn.execute(
                sa.insert(operator_actions).values(
                    operator_id=None if operator is None else operator.id,
                    operator_name=name[:64],
                    action=action.value,
                    target=None if target is None else target[:128],
                    outcome=outcome,
                    detail=dict(detail),
                    address=address[:64],
                    created_at=now,
                )
            )

    def actions(
        self, *, limit: int, before_id: int | None = None, target: str | None = None
    ) -> list[ActionRecord]:
        """Newest first; ``target`` narrows to one order (or operator)."""
        query = sa.select(operator_actions).order_by(operator_actions.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(operator_actions.c.id < before_id)
        if target is not None:
            query = query.where(operator_actions.c.target == target)
        with self.engine.begin() as conn:
            rows = conn.execute(query).all()
        return [
            ActionRecord(
                id=row.id,
                operator_name=row.operator_name,
                action=row.action,
                target=row.target,
                outcome=row.outcome,
                detail=dict(row.detail),
                address=row.address,
                created_at=row.created_at,
            )
            for row in rows
        ]

    # ---- alerts ------------------------------------------------------------------------

    def acknowledge(self, event_id: int, operator_id: int, note: str, now: datetime) -> None:
        """Acknowledge an alert event once, with a note."""
        note = check_note(note)
        with self._writer.begin() as conn:
            kind = conn.execute(sa.select(events.c.type).where(events.c.id == event_id)).first()
            if kind is None or kind.type != EventType.ALERT.value:
                raise NotFoundError("no such alert", code="NO_SUCH_ALERT")
            done = conn.execute(
                sa.select(alert_acks.c.event_id).where(alert_acks.c.event_id == event_id)
            ).first()
            if done is not None:
                raise ConflictError("this alert is already acknowledged", code="ALERT_ACKNOWLEDGED")
            conn.execute(
                sa.insert(alert_acks).values(
                    event_id=event_id, operator_id=operator_id, note=note, acknowledged_at=now
                )
            )
