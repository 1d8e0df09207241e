"""The ``scanpay`` command line."""
