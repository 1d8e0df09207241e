"""Known-answer vectors: PROTOCOL.md 5.2.1, 5.2.2, 5.2.3 (official), 5.3.2 (wechatpay-go),
5.4.3 (derived, pinned)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from scanpay.errors import DecryptionError
from scanpay.wechat.v3.aead import gcm_decrypt, gcm_encrypt
from scanpay.wechat.v3.sign import (
    V3Merchant,
    build_authorization,
    request_signing_string,
    sign_message,
    verify_message,
)
from scanpay.wechat.v3.transactions import (
    NativeOrder,
    close_order_request,
    native_prepay_request,
    query_by_out_trade_no_request,
)
from tests.wechat.v3.factories import OFFICIAL_SERIAL, official_test_key

TS = 1554208460
NONCE = "593BEC0C930BF1AFEB40B4A08C8FB242"
JSAPI_BODY = (
    '{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"Image形象店-深圳腾大-QQ公仔",'
    '"out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php",'
    '"amount":{"total":100,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}'
).encode()
SIG_521 = (
    "jnks4dlrPw3ZX+ozVvSK39oa0t7OMBsg83BHAwd8BRdUFiVaQNTLTvci+wURgP1OQBbKYhFGvt7iqYpDSTQkp7Uq1slt"
    "aQKyncCyrA1g88m5bsKERQfPyT0ahSwKTYJ1CAn9QiJuSJRq1QsQs07eehbU/k9BCS51jTyc1Jpsi2H77HF9f/BnjXAO"
    "P3/sPObg6V5Ee4EzwLox684hhuMuIwHo7D8KFk3LIHOKDcNI4It1aCXydFWNpNK+SG86VUDe5kwoDpw4Ulqfu9z8OFDG"
    "bDs9TCxEv8iqQzbpxOlEVoOe2kalSYM5kApQb3nZcxdUtoE0liJGW3RGUNE0t4v01A=="
)
SIG_522 = (
    "Lc9VXxmeonkdV8Xk9tmigQFLhl0vRWTerdmoRu01aAnYwIrD/5nsSwE1WlmZGLRlAFTNQ3QsMa0+VRDlJp1Wp5p0nO8E"
    "K68b5sJBbjouxaFciIfq1zfDWWz+jqhcMoKXI1A6dPm1AW7D4d30WsMTNzp6g23OXakIsh9LO3lUmwvTuE0BY8ncf6tN"
    "Gk4wKmvXwERd/ZpoQY3MAVKz+Nakwc+2XBmzT66KcUehU5kr4IvGa/lEU5RZb/q00zP9VLdBhC/jQSX3X1UcJLCtEc4g"
    "Tmib4tnmAT+bHF/e17ZAuxDNcx6rqT8gNEXqaJGG+1OflMSTU2tpyG65G4dMKdFcoA=="
)
SIG_523_JSAPI = (
    "mI35pfNEQV6777ke/1T+LJLQDNTm7yeoUJH+j/adPGhmCCi0PbgkvYQTRcXH0uibcLVtvFLdGLpmoYO9FV6lBBsTAjuh"
    "h5YOvQi0e2g3e0yytitiNET9FEuqM0pjnKfRW4K6LIZDdbWJv9KhZUx3DrJa5TL7OJ7VdADVivxVySIlPVKjGwuCXzuX"
    "SJes0UcILgWQUMyha5/3nYofuHtS7r+KYyMuxD+oJ9VM1Qdxk4UIG59CP5Y3wtYIFybyF3bdu1caHTRRX+DLyMXyYA/I"
    "rTmiW01c4RPjpHBX5Dk1sZyY1zVsWNsvMHr2e1NTWtBxKJ+qk5N61J7caYoepHFaxw=="
)
SIG_523_APP = (
    "gXx9KhTP6IooKV1SuG3OCGlBIgZbKtubCZvnau6khw1iffvNT28IzLbKmztq2xA/RCNbZa1XOsoiuVmAEeTZQicWfhv4"
    "P+O4oBRIrx0X9f3cnWFkMBU9alTWs0nyQ1N9fcILOTe0f4kxOhVh+/Xhn5hOiUK7Sz3XA1mcpa3R2NCWf/e+0ow/RDf1"
    "5iTymOHgDrEkT/gedg/3E0iXfDX3mFicSZhrHESZDOTXcl9RzELREBUFznd/o2NQM99WcL86m23HY0cTy+QGWU4QDmNr"
    "bQ9ihmLW71qPb0Cx/d7EQvw/Kyx0A6s64ZQp3hHdcmiRcLnjVXrKCk7LShaCK+lS3Q=="
)
SIG_543_NATIVE = (
    "acpuntdYN056W3mR13K5b25UBZqseYGK+vxsWiUYt2B5D52VWsGrJX6zraHUNEYQLnItJv42EXaLZVlC2KPWLkOAE+py"
    "WlRRom3jr8v7LITkaAeJvpa2kWAVXZl7sgoO1cjKw/ex3l+lXUpBzNPMr0SAPHePdaKO+0CCZf5hzkhAjRcrtFPrHaKT"
    "xKQf5eizBMsSBrQ1oIy7yEkRlvTB9aBgCnNFis2dt/zKyViUxXs6GL66pp+H2JfXS67fASBnUb7TbvwSp4N/laZOn7Xx"
    "GRBG4ij732VVTo2h10x7K06ZdrUozQk4OVfL2/daXNJ/uHQ23RwcRl4aXf1AmFpSRg=="
)
SIG_543_QUERY = (
    "cVvdVujlEmASmAYpcmKXmIrlQualKxd87f8XZtnTeLCw3V7kZ1ST6YwX0kSLsqJeecZqmKJfd6ieRl/hRLZUodxXU1Nz"
    "oTz1OXNh6TzBfcxU8xRNFbmPiEHwMJM7Jo52TYGk71MaCbvkPlUpUL6WhpmAgfC7jg/3IcA/UILbby4Nro0Nbq0An/DY"
    "EEp8vZMaags/5ed52JpGqxEOcTLIuqihy+Amy5z+t8m3a93YTRNDRi0W5b332UQBtrWRSwJOMU96Nof7hJC2MM71Y1bH"
    "B8YP8kBKaoDW7vEoNsEMVzkyp0pyjUHFWc6yaRVHE054z79S2koj3jSRbCiY+CaJzg=="
)
SIG_543_CLOSE = (
    "P07HGWiMaJOltVF73HduLS9BRHZgDNu9vz6W34MvVxtX6wF7x4DukPqSYsKm1rcJ0ZGbdNZnYy4uFR/ghWB2Jr+m4wHI"
    "61IkZMKLZSO6mTycv9hrr/GSGhNgCqme+yGjonosG6p5RN9dgn2O/1SL7k3uP6639dWs2mGwBDSd/TfGI1250II3UFxd"
    "H1wUTUyJx0nIaJKnsS8JcFkv/yL1HJlM7bg+xoMLQU500RB4DPn6hG3luz4XDobPc49gT6jBxNCviFaPEanGXhW3NKe3"
    "dKBvDAsAcSTbEwI1kF2BOx8B0QTtS7FKRZ246KHDjsy5t4GWXztLdAZWIVVVVZDZEQ=="
)


def merchant() -> V3Merchant:
    return V3Merchant("1900007291", OFFICIAL_SERIAL, official_test_key())


def test_521_string_and_signature() -> None:
    message = request_signing_string("POST", "/v3/pay/transactions/jsapi", TS, NONCE, JSAPI_BODY)
    assert message == b"POST\n/v3/pay/transactions/jsapi\n1554208460\n" + NONCE.encode() + (
        b"\n" + JSAPI_BODY + b"\n"
    )
    assert sign_message(official_test_key(), message) == SIG_521
    verify_message(official_test_key().public_key(), message, SIG_521)


def test_521_authorization_header() -> None:
    header = build_authorization(
        merchant(), "POST", "/v3/pay/transactions/jsapi", JSAPI_BODY, timestamp=TS, nonce=NONCE
    )
    assert header == (
        'WECHATPAY2-SHA256-RSA2048 mchid="1900007291",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",'
        f'signature="{SIG_521}",timestamp="1554208460",'
        'serial_no="408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"'
    )


def test_522_get_with_path_parameter() -> None:
    message = request_signing_string(
        "GET", "/v3/refund/domestic/refunds/123123123123", TS, NONCE, b""
    )
    assert message.endswith(b"\n\n")
    assert sign_message(official_test_key(), message) == SIG_522


@pytest.mark.parametrize(
    ("package", "expected"),
    [("prepay_id=wx201410272009395522657a690389285100", SIG_523_JSAPI),
     ("wx201410272009395522657a690389285100", SIG_523_APP)],
)  # fmt: skip
def test_523_invoke_signatures(package: str, expected: str) -> None:
    message = f"wx2421b1c4370ec43b\n{TS}\n{NONCE}\n{package}\n".encode()
    assert sign_message(official_test_key(), message) == expected


def test_543_native_prepay_pinned() -> None:
    order = NativeOrder(
        appid="wxd678efh567hg6787",
        mchid="1900007291",
        description="Image形象店-深圳腾大-QQ公仔",
        out_trade_no="1217752501201407033233368018",
        notify_url="https://www.weixin.qq.com/wxpay/pay.php",
        total=100,
    )
    request = native_prepay_request(order)
    assert (
        request.body
        == (
            '{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"Image形象店-深圳腾大-QQ公仔",'
            '"out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php",'
            '"amount":{"total":100,"currency":"CNY"}}'
        ).encode()
    )
    message = request_signing_string(request.method, request.url, TS, NONCE, request.body)
    assert sign_message(official_test_key(), message) == SIG_543_NATIVE


def test_543_query_pinned() -> None:
    request = query_by_out_trade_no_request("1217752501201407033233368018", "1900007291")
    assert (
        request.url
        == "/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=1900007291"
    )
    message = request_signing_string("GET", request.url, TS, NONCE, request.body)
    assert sign_message(official_test_key(), message) == SIG_543_QUERY


def test_543_close_pinned() -> None:
    request = close_order_request("1217752501201407033233368018", "1900007291")
    assert request.body == b'{"mchid":"1900007291"}'
    message = request_signing_string("POST", request.url, TS, NONCE, request.body)
    assert sign_message(official_test_key(), message) == SIG_543_CLOSE


def test_532_gcm_primitive_vector() -> None:
    # wechatpay-go's vector uses a 16-byte key: a GCM check at the primitive level.
    plain = gcm_decrypt(
        AESGCM(b"testAPIv3Key0000"),
        "wCq51qZv4Yfg",
        "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC",
        "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
    )
    assert plain == b"Hello World"
    again = gcm_encrypt(
        AESGCM(b"testAPIv3Key0000"),
        "wCq51qZv4Yfg",
        b"Hello World",
        "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
    )
    assert again == "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"


def test_532_wrong_key_fails() -> None:
    with pytest.raises(DecryptionError):
        gcm_decrypt(
            AESGCM(b"testAPIv3Key1111"),
            "wCq51qZv4Yfg",
            "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC",
            "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
        )
