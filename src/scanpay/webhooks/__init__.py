"""Webhooks for the shop: Standard Webhooks v1 signing and verification, endpoint safety, the
retry schedule, the HTTP sender and the delivery worker over the store's outbox.

Depends on the domain and the store, never on the web layer. :mod:`scanpay.webhooks.signing`
uses the standard library only, so a Python shop can verify deliveries with it alone.
"""
