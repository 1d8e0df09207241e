"""Settings that survive a restart of the simulator: faults, the clock offset, the signature
clock and the refund outcome chosen for new refunds.

Kept as JSON values in the ledger (table ``sim_settings``), so a simulator with a state
directory comes back with the faults it had (including how many firings were left and
when a timed rotation was armed), its test clock where it was moved to, and the same choices.
An in-memory simulator keeps them in its in-memory ledger (for the life of the process).
Unreadable values are refused at start with a clear error rather than silently dropped.
"""

from __future__ import annotations

import json
from typing import Any, Final

from scanpay.errors import ConfigurationError
from scanpay.simulator.ledger import Ledger

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sim_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

FAULTS: Final = "faults"
CLOCK_OFFSET: Final = "clock_offset"
SIGNATURE_CLOCK: Final = "signature_clock"
REFUND_OUTCOME: Final = "refund_outcome"


class SavedSettings:
    """Named JSON values in the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        ledger.ensure_schema(_SCHEMA)

    def load(self, name: str) -> Any:
        """The saved value, or None when there is none."""
        row = self._ledger.fetch_one("SELECT value FROM sim_settings WHERE name = ?", name)
        if row is None:
            return None
        try:
            return json.loads(row["value"])
        except ValueError:
            raise ConfigurationError(f"saved simulator setting {name!r} is unreadable") from None

    def save(self, name: str, value: Any) -> None:
        text = json.dumps(value, sort_keys=True)
        with self._ledger.transaction() as db:
            db.execute(
                "INSERT INTO sim_settings (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, text),
            )
