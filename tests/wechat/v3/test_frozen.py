"""The cheap-to-build message types stay typed and immutable, and the parse path builds the
same objects the constructors do (scanpay.wechat.v3.frozen, NamedTuple messages, the direct
JSON scanner)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import BEIJING
from scanpay.wechat.states import RefundState, TradeState
from scanpay.wechat.v3.aead import EncryptedResource
from scanpay.wechat.v3.frozen import assemble
from scanpay.wechat.v3.jsonbody import dump_json, integers, parse_json
from scanpay.wechat.v3.notify import Envelope, PaymentNotice
from scanpay.wechat.v3.refunds import Refund, refund_from_json
from scanpay.wechat.v3.transactions import Transaction, transaction_from_json
from scanpay.wechat.v3.verify import SignedHeaders

PAID = Transaction(
    appid="wxd678efh567hg6787",
    mchid="1900007291",
    out_trade_no="order_000001",
    trade_state=TradeState.SUCCESS,
    trade_state_desc="支付成功",
    transaction_id="4200000001",
    trade_type="NATIVE",
    bank_type="OTHERS",
    attach="a",
    success_time=datetime(2024, 1, 1, 12, 0, tzinfo=BEIJING),
    payer_openid="oUpF8",
    total=100,
    payer_total=90,
    payer_currency="CNY",
)
REFUNDED = Refund(
    out_refund_no="r1",
    refund_id="50000000382019052709732678859",
    status=RefundState.SUCCESS,
    out_trade_no="order_000001",
    transaction_id="4200000001",
    mchid="1900007291",
    channel="ORIGINAL",
    user_received_account="招商银行信用卡0403",
    success_time=datetime(2024, 1, 2, 12, 0, tzinfo=BEIJING),
    create_time=datetime(2024, 1, 2, 11, 0, tzinfo=BEIJING),
    funds_account="AVAILABLE",
    total=100,
    refund=40,
    payer_total=100,
    payer_refund=40,
)


@pytest.mark.parametrize("cls", [Transaction, Refund])
def test_assembled_types_have_no_slots_and_no_post_init(cls: type[object]) -> None:
    assert dataclasses.is_dataclass(cls)
    assert "__slots__" not in vars(cls)
    assert not hasattr(cls, "__post_init__")


@pytest.mark.parametrize(
    ("parsed", "built"),
    [
        (transaction_from_json(PAID.to_json()), PAID),
        (refund_from_json(REFUNDED.to_json()), REFUNDED),
        (refund_from_json(REFUNDED.to_json(notification=True)), None),
    ],
)
def test_parsed_messages_are_whole_frozen_dataclasses(
    parsed: Transaction | Refund, built: Transaction | Refund | None
) -> None:
    names = {f.name for f in dataclasses.fields(parsed)}
    assert set(vars(parsed)) == names  # every field set, nothing else
    if built is not None:
        assert parsed == built
        assert hash(parsed) == hash(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.total = 1  # type: ignore[misc]
    changed = dataclasses.replace(parsed, total=5)
    assert changed.total == 5
    assert type(changed) is type(parsed)


def test_assemble_makes_an_equal_frozen_instance() -> None:
    values = {f.name: getattr(PAID, f.name) for f in dataclasses.fields(PAID)}
    made = assemble(Transaction, **values)
    assert made == PAID
    assert repr(made) == repr(PAID)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.appid = "x"  # type: ignore[misc]


def test_named_tuple_messages_are_immutable() -> None:
    signed = SignedHeaders("1", "n", "s", "PUB_KEY_ID_1")
    resource = EncryptedResource("c", "n")
    envelope = Envelope("id", datetime(2024, 1, 1, tzinfo=BEIJING), "E", "R", "", resource)
    notice = PaymentNotice(envelope, PAID, signed)
    for message in (signed, resource, envelope, notice):
        with pytest.raises(AttributeError):
            message.nonce = "x"  # type: ignore[misc,union-attr]
    assert notice.transaction is PAID
    assert resource.algorithm == "AEAD_AES_256_GCM"


@pytest.mark.parametrize(
    "body",
    [b'{"a":1}', b'{"a":1} \n\t\r', b' \n{"a":1}', b'{"a":{"b":[1,2]}}'],
)
def test_direct_scanner_accepts_json_white_space(body: bytes) -> None:
    assert parse_json(body)["a"] in (1, {"b": [1, 2]})


@pytest.mark.parametrize(
    "body",
    [b'{"a":1}x', b'{"a":1} {}', b'{"a":1}\x0b', b'{"a":', b"{", b"", b"{}}", b'{"a":1}\x00'],
)
def test_direct_scanner_rejects_trailing_data_and_truncation(body: bytes) -> None:
    with pytest.raises(MalformedMessageError, match="not valid JSON"):
        parse_json(body)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(st.integers(), st.text(max_size=8), st.none(), st.booleans()),
        max_size=6,
    )
)
def test_parse_json_round_trips(value: dict[str, object]) -> None:
    assert parse_json(dump_json(value)) == value


def test_integers_reads_optional_integers() -> None:
    assert integers({"a": 1, "b": None}, ("a", "b", "c")) == [1, 0, 0]
    for bad in (True, 1.0, "1"):
        with pytest.raises(MalformedMessageError, match="b must be an integer"):
            integers({"a": 1, "b": bad}, ("a", "b"))
