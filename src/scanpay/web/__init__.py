"""The merchant service over HTTP: shop API, notification endpoint, status stream, pages.

Build it with :func:`scanpay.web.app.create_app`.
"""
