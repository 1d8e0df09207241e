"""Async HTTP clients over the protocol core: the only place scanpay sends bytes to WeChat."""
