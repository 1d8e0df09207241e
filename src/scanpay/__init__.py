"""scanpay: WeChat Pay Native (PC QR code) payments for Python shops."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
