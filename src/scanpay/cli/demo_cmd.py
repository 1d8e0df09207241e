"""`scanpay demo` (not written yet)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""


def run(args: argparse.Namespace) -> int:
    raise SystemExit("scanpay demo: not implemented yet")
