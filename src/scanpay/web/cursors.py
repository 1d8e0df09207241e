"""Page cursors of the order lists (the shop API's and the console's): the last listed order's
creation time and id, base64url without padding. Callers treat them as opaque."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from scanpay.errors import ValidationError


def make_cursor(created_at: datetime, order_id: str) -> str:
    raw = f"{created_at.isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: str, refusal: ValidationError) -> tuple[datetime, str]:
    """The creation time and id in ``cursor``; ``refusal`` is raised for one that
    :func:`make_cursor` did not make (undecodable, or a time without its zone)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, order_id = raw.split("|", 1)
        created = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise refusal from None
    if created.tzinfo is None:
        raise refusal
    return created, order_id
