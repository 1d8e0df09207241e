"""Metrics, structured logs and request ids for the merchant service (issue 9;
docs/observability.md)."""
