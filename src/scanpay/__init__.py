"""scanpay: WeChat Pay Native (PC QR code) payments for Python shops.

The public surface, pinned by ``tests/test_public_api.py``::

    from scanpay import Settings, create_app          # the merchant service
    from scanpay import V2Client, V3Client            # the WeChat Pay clients
    from scanpay import Simulator                     # the local WeChat Pay
    from scanpay import ScanpayError, ApiError, ...   # the one exception tree

Names are imported on first use, so ``import scanpay.wechat`` (the pure protocol core) does
not pull in the web framework, the database layer or the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from scanpay.errors import ApiError as ApiError
from scanpay.errors import ConfigurationError as ConfigurationError
from scanpay.errors import DecryptionError as DecryptionError
from scanpay.errors import DomainError as DomainError
from scanpay.errors import MalformedMessageError as MalformedMessageError
from scanpay.errors import ProtocolError as ProtocolError
from scanpay.errors import RetryableApiError as RetryableApiError
from scanpay.errors import ScanpayError as ScanpayError
from scanpay.errors import SignatureError as SignatureError
from scanpay.errors import StaleMessageError as StaleMessageError
from scanpay.errors import TransportError as TransportError
from scanpay.errors import UnknownKeyError as UnknownKeyError

if TYPE_CHECKING:
    from scanpay.client.v2 import V2Client as V2Client
    from scanpay.client.v3 import V3Client as V3Client
    from scanpay.config import Settings as Settings
    from scanpay.simulator.core import Simulator as Simulator
    from scanpay.web.app import create_app as create_app

__version__: Final = "0.1.0"

_LAZY: Final = {
    "Settings": "scanpay.config",
    "Simulator": "scanpay.simulator.core",
    "V2Client": "scanpay.client.v2",
    "V3Client": "scanpay.client.v3",
    "create_app": "scanpay.web.app",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scanpay' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ApiError",
    "ConfigurationError",
    "DecryptionError",
    "DomainError",
    "MalformedMessageError",
    "ProtocolError",
    "RetryableApiError",
    "ScanpayError",
    "Settings",
    "SignatureError",
    "Simulator",
    "StaleMessageError",
    "TransportError",
    "UnknownKeyError",
    "V2Client",
    "V3Client",
    "__version__",
    "create_app",
]
