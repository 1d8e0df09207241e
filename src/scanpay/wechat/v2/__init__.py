"""WeChat Pay API v2 (XML, MD5 / HMAC-SHA256 signatures), both sides of the wire.

Modules: ``sign`` (the signing rule), ``envelope`` (request/response envelope, error mapping),
``orders`` (unifiedorder, orderquery, closeorder), ``refunds`` (refund, refundquery),
``bills`` (downloadbill; the text format is :mod:`scanpay.wechat.bill`), ``notify`` (payment
notification), ``refund_notify`` (refund notification ``req_info``). See docs/protocol-v2.md.
"""
