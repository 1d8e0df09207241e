"""Console operators: roles, what each role may do, and the rules for names and notes.

Roles are ordered: a viewer reads; support also re-queries WeChat Pay and re-sends webhooks;
an admin also refunds, closes orders and manages operators. :func:`may` is the one place
that answers "may this role do this action".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from scanpay.errors import ValidationError

NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD: Final = 12
MAX_PASSWORD: Final = 256
MAX_NOTE: Final = 500


class Role(StrEnum):
    VIEWER = "viewer"
    SUPPORT = "support"
    ADMIN = "admin"


class Action(StrEnum):
    """Everything an operator can do that changes something (each is audited)."""

    SIGN_IN = "sign_in"
    SIGN_OUT = "sign_out"
    QUERY = "query"  # ask WeChat Pay about the order now
    RESEND_WEBHOOK = "resend_webhook"  # extension point: webhooks (issue 11)
    ACK_ALERT = "ack_alert"
    CLOSE = "close"
    REFUND = "refund"
    VIEW_DECRYPTED = "view_decrypted"  # reading a decrypted v3 notification
    MANAGE_OPERATORS = "manage_operators"


_RANK: Final[Mapping[Role, int]] = {Role.VIEWER: 0, Role.SUPPORT: 1, Role.ADMIN: 2}
NEEDS: Final[Mapping[Action, Role]] = {
    Action.SIGN_IN: Role.VIEWER,
    Action.SIGN_OUT: Role.VIEWER,
    Action.QUERY: Role.SUPPORT,
    Action.RESEND_WEBHOOK: Role.SUPPORT,
    Action.ACK_ALERT: Role.SUPPORT,
    Action.CLOSE: Role.ADMIN,
    Action.REFUND: Role.ADMIN,
    Action.VIEW_DECRYPTED: Role.ADMIN,
    Action.MANAGE_OPERATORS: Role.ADMIN,
}


def may(role: Role, action: Action) -> bool:
    """Whether ``role`` may do ``action``."""
    return _RANK[role] >= _RANK[NEEDS[action]]


def check_name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise ValidationError(
            "an operator name is 1-64 letters, digits or . _ @ - (starting with a letter or digit)",
            code="INVALID_OPERATOR_NAME",
        )
    return value


def check_password(value: str) -> str:
    if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise ValidationError(
            f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters",
            code="INVALID_PASSWORD",
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError("a password has no control characters", code="INVALID_PASSWORD")
    return value


def check_note(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_NOTE:
        raise ValidationError(f"a note is 1 to {MAX_NOTE} characters", code="INVALID_NOTE")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise ValidationError("a note has no control characters", code="INVALID_NOTE")
    return value


@dataclass(frozen=True)
class Operator:
    """An operator as the console sees it (never with the password hash)."""

    id: int
    name: str
    role: Role
    disabled: bool
    created_at: datetime
    updated_at: datetime

    def may(self, action: Action) -> bool:
        return not self.disabled and may(self.role, action)
