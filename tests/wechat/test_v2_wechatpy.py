"""Cross-check: scanpay's v2 signatures equal wechatpy's for random field maps, both sign types."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.sign import sign_v2, verify_v2

# Printable text including CJK; '&' and '=' are allowed in values (v2 signs raw values).
_value = st.text(
    st.characters(
        exclude_categories=("Cs", "Cc"),
        include_characters="支付测试商品退款",
    ),
    max_size=30,
)
_name = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(lambda n: n != "sign")
_fields = st.dictionaries(_name, _value | st.just(""), max_size=15)
_key = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=32, max_size=32)


def _without_empty(fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if v}


@settings(max_examples=100, deadline=None)
@given(_fields, _key)
def test_md5_equals_wechatpy(fields: dict[str, str], key: str) -> None:
    # wechatpy drops empty values itself; scanpay does too
    assert sign_v2(fields, Secret(key)) == calculate_signature(fields, key)
    assert sign_v2(_without_empty(fields), Secret(key)) == calculate_signature(fields, key)


@settings(max_examples=100, deadline=None)
@given(_fields, _key)
def test_hmac_sha256_equals_wechatpy(fields: dict[str, str], key: str) -> None:
    fields = {**fields, "sign_type": "HMAC-SHA256"}
    ours = sign_v2(fields, Secret(key), SignType.HMAC_SHA256)
    assert ours == calculate_signature_hmac(fields, key)
    assert verify_v2({**fields, "sign": ours}, Secret(key)) is SignType.HMAC_SHA256


@settings(max_examples=50, deadline=None)
@given(_fields, _key)
def test_md5_is_the_documented_formula(fields: dict[str, str], key: str) -> None:
    pairs = [f"{k}={v}" for k, v in sorted(fields.items()) if v]
    text = "&".join([*pairs, f"key={key}"]).encode()
    assert sign_v2(fields, Secret(key)) == hashlib.md5(text).hexdigest().upper()
    mac = hmac.new(key.encode(), text, hashlib.sha256).hexdigest().upper()
    assert sign_v2(fields, Secret(key), SignType.HMAC_SHA256) == mac
