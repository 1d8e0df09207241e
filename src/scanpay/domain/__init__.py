"""The shop's payment domain: orders, payment attempts, events, the state machine, use cases.

No I/O lives here. WeChat Pay and the database are reached through the ports in
:mod:`scanpay.domain.ports`.
"""
