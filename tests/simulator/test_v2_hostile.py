"""Bad, forged and hostile v2 requests get WeChat-style XML answers, never a 500."""

from __future__ import annotations

import httpx
import pytest

from scanpay.simulator import Simulator
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.envelope import V2Merchant, encode_request
from scanpay.wechat.v2.sign import sign_v2
from scanpay.wechat.xmlcodec import dump_xml, parse_xml

from .conftest import order

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><body>&lol3;</body></xml>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><body>&xxe;</body></xml>"""


async def post(raw: httpx.AsyncClient, path: str, body: bytes) -> dict[str, str]:
    response = await raw.post(path, content=body)
    assert response.status_code == 200
    return parse_xml(response.content)


def signed(sim: Simulator, fields: dict[str, str | int], **merchant: object) -> bytes:
    values: dict[str, object] = {
        "appid": sim.credentials.appid,
        "mch_id": sim.credentials.mchid,
        "key": sim.credentials.api_v2_key,
        "sign_type": SignType.MD5,
    }
    values.update(merchant)
    return encode_request(fields, V2Merchant(**values), nonce="n0nce")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [b"", b"not xml", b"<xml><a>1</a>", BILLION_LAUGHS, EXTERNAL_ENTITY, b"\xff\xfe<xml/>",
     b"<xml><a>1</a><a>2</a></xml>", b"<xml><a><b>1</b></a></xml>"],
    ids=["empty", "text", "unclosed", "billion-laughs", "xxe", "not-utf8", "dup", "nested"],
)  # fmt: skip
async def test_malformed_xml_is_a_fail_answer(raw: httpx.AsyncClient, body: bytes) -> None:
    for path in ("/pay/unifiedorder", "/pay/orderquery", "/pay/closeorder"):
        answer = await post(raw, path, body)
        assert answer["return_code"] == "FAIL"
        assert "sign" not in answer


async def test_oversized_body(raw: httpx.AsyncClient) -> None:
    answer = await post(raw, "/pay/unifiedorder", b"<xml><body>" + b"x" * 70_000 + b"</body></xml>")
    assert answer["return_code"] == "FAIL"


async def test_wrong_key_is_a_signature_failure(sim: Simulator, raw: httpx.AsyncClient) -> None:
    body = signed(sim, order().to_fields(), key=Secret("k" * 32))
    answer = await post(raw, "/pay/unifiedorder", body)
    assert answer == {"return_code": "FAIL", "return_msg": "签名错误"}
    assert sim.ledger.order("order-0001") is None


async def test_declared_sign_type_must_match_the_signature(
    sim: Simulator, raw: httpx.AsyncClient
) -> None:
    fields: dict[str, str | int] = {
        "appid": sim.credentials.appid,
        "mch_id": sim.credentials.mchid,
        "nonce_str": "abc",
        **order().to_fields(),
        "sign_type": "MD5",
    }
    fields = {k: v for k, v in fields.items() if v != ""}
    hmac_sign = sign_v2(
        {**fields, "sign_type": "HMAC-SHA256"}, sim.credentials.api_v2_key, SignType.HMAC_SHA256
    )
    answer = await post(raw, "/pay/unifiedorder", dump_xml({**fields, "sign": hmac_sign}))
    assert answer["return_msg"] == "签名错误"
    fields["sign_type"] = "SHA1"
    answer = await post(raw, "/pay/unifiedorder", dump_xml({**fields, "sign": hmac_sign}))
    assert answer["return_code"] == "FAIL"
    assert "sign_type" in answer["return_msg"]


async def test_unknown_appid_and_mch_id(sim: Simulator, raw: httpx.AsyncClient) -> None:
    answer = await post(raw, "/pay/unifiedorder", signed(sim, order().to_fields(), appid="wx0"))
    assert answer["return_code"] == "SUCCESS"
    assert answer["result_code"] == "FAIL"
    assert answer["err_code"] == "APPID_MCHID_NOT_MATCH"
    assert answer["sign"]  # a SUCCESS envelope is always signed

    answer = await post(raw, "/pay/orderquery", signed(sim, {"out_trade_no": "x" * 8}, mch_id="1"))
    assert answer["return_code"] == "FAIL"
    assert "MCHID_NOT_EXIST" in answer["return_msg"]


async def test_missing_required_field(sim: Simulator, raw: httpx.AsyncClient) -> None:
    fields = order().to_fields()
    del fields["notify_url"]
    answer = await post(raw, "/pay/unifiedorder", signed(sim, fields))
    assert answer["err_code"] == "LACK_PARAMS"
    assert "notify_url" in answer["err_code_des"]


@pytest.mark.parametrize(
    ("change", "value"),
    [("trade_type", "JSAPI"), ("total_fee", "0"), ("total_fee", "1.5"), ("fee_type", "USD"),
     ("out_trade_no", "bad no!"), ("notify_url", "http://shop/n?x=1"), ("time_expire", "2025")],
)  # fmt: skip
async def test_rule_violations_are_invalid_request(
    sim: Simulator, raw: httpx.AsyncClient, change: str, value: str
) -> None:
    fields = {**order().to_fields(), change: value}
    answer = await post(raw, "/pay/unifiedorder", signed(sim, fields))
    assert answer["return_code"] == "SUCCESS"
    assert answer["result_code"] == "FAIL"
    assert answer["err_code"] == "INVALID_REQUEST"
    assert sim.ledger.orders() == []


async def test_get_is_refused(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/pay/unifiedorder")
    assert parse_xml(response.content)["return_msg"].startswith("REQUIRE_POST_METHOD")


async def test_query_needs_a_number(sim: Simulator, raw: httpx.AsyncClient) -> None:
    answer = await post(raw, "/pay/orderquery", signed(sim, {}))
    assert answer["err_code"] == "LACK_PARAMS"
