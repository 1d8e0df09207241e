"""A local WeChat Pay: API v2 and v3 Native at WeChat's paths, a payer, notifications, a clock.

Public surface (pinned by tests/simulator/test_state.py::test_public_api)::

    from scanpay.simulator import Simulator, PayOutcome, MerchantCredentials, SimClock
"""

from __future__ import annotations

from scanpay.simulator.clock import SimClock as SimClock
from scanpay.simulator.core import Simulator as Simulator
from scanpay.simulator.core import generate_credentials as generate_credentials
from scanpay.simulator.credentials import MerchantCredentials as MerchantCredentials
from scanpay.simulator.notifier import RETRY_DELAYS as RETRY_DELAYS
from scanpay.simulator.payer import PayOutcome as PayOutcome
from scanpay.simulator.payer import PayResult as PayResult

__all__ = [
    "RETRY_DELAYS",
    "MerchantCredentials",
    "PayOutcome",
    "PayResult",
    "SimClock",
    "Simulator",
    "generate_credentials",
]
