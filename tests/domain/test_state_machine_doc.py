"""docs/state-machine.md shows the table as it is in the code."""

from __future__ import annotations

from pathlib import Path

from scanpay.domain.machine import generated_doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "state-machine.md"
BEGIN = "<!-- generated from scanpay.domain.machine: begin -->\n"
END = "<!-- generated from scanpay.domain.machine: end -->"


def test_committed_diagram_matches_the_table() -> None:
    text = DOC.read_text(encoding="utf-8")
    generated = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert generated == generated_doc(), "run: python -m scanpay.domain.machine"
