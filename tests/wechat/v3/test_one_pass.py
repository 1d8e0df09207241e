"""The one-pass readers of the notification hot path (``transaction_from_json``,
``parse_envelope``) against their field-by-field reference paths: over random shapes, both
accept with equal results or both refuse with the same error; and what
``parse_authenticated_json`` still refuses (everything ``parse_json`` does except duplicate
keys, which only the general parser refuses)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import BEIJING
from scanpay.wechat.states import TradeState
from scanpay.wechat.v3.jsonbody import JsonObject, dump_json, parse_authenticated_json, parse_json
from scanpay.wechat.v3.notify import _envelope_checked, parse_envelope
from scanpay.wechat.v3.transactions import (
    Transaction,
    _transaction_checked,
    transaction_from_json,
)

PAID = Transaction(
    appid="wxd678efh567hg6787",
    mchid="1900007291",
    out_trade_no="order_000001",
    trade_state=TradeState.SUCCESS,
    trade_state_desc="支付成功",
    transaction_id="4200000001",
    trade_type="NATIVE",
    bank_type="OTHERS",
    success_time=datetime(2024, 1, 1, 12, 0, tzinfo=BEIJING),
    payer_openid="oUpF8",
    total=100,
    payer_total=100,
)
ENVELOPE: JsonObject = {
    "id": "EV-2018022511223320873",
    "create_time": "2024-01-01T12:00:01+08:00",
    "resource_type": "encrypt-resource",
    "event_type": "TRANSACTION.SUCCESS",
    "summary": "支付成功",
    "resource": {
        "original_type": "transaction",
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": "c2VhbGVk",
        "associated_data": "transaction",
        "nonce": "fGd3sq8aPbXy",
    },
}

# values a hostile or unusual JSON field may hold
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=2),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "x", "SUCCESS", "NOTPAY", "2024-01-01T12:00:00+08:00", "2024-13-01"]),
    st.just([]),
    st.just({}),
    st.just({"openid": 1}),
    st.just({"total": True}),
    st.just({"total": 5, "currency": None}),
)


def _same_outcome(fast: Callable[[JsonObject], object], slow: Callable[[JsonObject], object],
                  data: JsonObject) -> None:  # fmt: skip
    try:
        expected: object = slow(data)
    except MalformedMessageError as error:
        expected = error
    try:
        got: object = fast(data)
    except MalformedMessageError as error:
        got = error
    if isinstance(expected, MalformedMessageError):
        assert isinstance(got, MalformedMessageError)
        assert str(got) == str(expected)
    else:
        assert got == expected


def _mutations(base: JsonObject) -> st.SearchStrategy[JsonObject]:
    """``base`` with some fields replaced by odd values, removed, or nested ones changed."""
    names = sorted(base)
    nested = {"amount.total", "amount.currency", "payer.openid", "amount.payer_total"}
    for outer in names:
        inside = base[outer]
        if isinstance(inside, dict):
            nested |= {f"{outer}.{inner}" for inner in inside}
    nested_names = sorted(nested)

    @st.composite
    def mutate(draw: st.DrawFn) -> JsonObject:
        data: JsonObject = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
        for name in draw(st.lists(st.sampled_from(names + nested_names), max_size=3)):
            outer, _, inner = name.partition(".")
            target = data
            if inner:
                holder = data.get(outer)
                if not isinstance(holder, dict):
                    continue
                target = data[outer] = dict(holder)  # never edit a shared example value
                name = inner
            if draw(st.booleans()):
                target[name] = draw(ODD_VALUES)
            else:
                target.pop(name, None)
        return data

    return mutate()


@settings(max_examples=100, deadline=None)
@given(_mutations(PAID.to_json()))
def test_transaction_one_pass_equals_field_by_field(data: JsonObject) -> None:
    _same_outcome(transaction_from_json, _transaction_checked, data)


@settings(max_examples=100, deadline=None)
@given(_mutations(ENVELOPE))
def test_envelope_one_pass_equals_field_by_field(data: JsonObject) -> None:
    _same_outcome(lambda d: parse_envelope(dump_json(d)), _envelope_checked, data)


def test_one_pass_transaction_is_a_whole_frozen_dataclass() -> None:
    parsed = transaction_from_json(PAID.to_json())
    assert parsed == PAID
    assert hash(parsed) == hash(PAID)
    assert set(vars(parsed)) == {f.name for f in dataclasses.fields(Transaction)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.total = 1  # type: ignore[misc]
    assert dataclasses.replace(parsed, total=7).total == 7


def test_duplicate_keys_refused_by_the_general_parser_only() -> None:
    body = b'{"a":1,"a":2,"b":{"c":1,"c":3}}'
    with pytest.raises(MalformedMessageError, match="duplicate JSON key"):
        parse_json(body)
    assert parse_authenticated_json(body) == {"a": 2, "b": {"c": 3}}  # the last one wins


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1}x',
        b'{"a":NaN}',
        b'{"a":-Infinity}',
        b"[1]",
        b'"a"',
        b'{"a":"\xff"}',
        b"{",
        b"[" * 100_000,
        b'{"a":1} {}',
    ],
)
def test_authenticated_parser_refuses_the_rest(body: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        parse_authenticated_json(body)
    with pytest.raises(MalformedMessageError):
        parse_json(body)


def test_authenticated_parser_size_limit() -> None:
    with pytest.raises(MalformedMessageError, match="too large"):
        parse_authenticated_json(b'{"a":"' + b"x" * (1 << 20) + b'"}')


SINGLE_ODD: list[object] = [
    *(None, True, 0, 1, -1, 1.5, "", "x", "SUCCESS", "2024-13-01", [], {}),
    *({"openid": 1}, {"total": True}, {"total": 5, "currency": None}),
]


def _single_mutations(base: JsonObject) -> list[JsonObject]:
    """Every field (nested ones too) replaced by every odd value, or removed: one at a time."""
    out: list[JsonObject] = []
    for outer, value in base.items():
        paths = [(outer, None)]
        if isinstance(value, dict):
            paths += [(outer, inner) for inner in value]
        for path in paths:
            for replacement in [*SINGLE_ODD, KeyError]:
                data: JsonObject = {k: (dict(v) if isinstance(v, dict) else v)
                                    for k, v in base.items()}  # fmt: skip
                holder = data if path[1] is None else data[path[0]]
                assert isinstance(holder, dict)
                name = path[0] if path[1] is None else path[1]
                if replacement is KeyError:
                    del holder[name]
                else:
                    holder[name] = replacement
                out.append(data)
    return out


def test_every_single_field_change_same_outcome() -> None:
    for data in _single_mutations(PAID.to_json()):
        _same_outcome(transaction_from_json, _transaction_checked, data)
    for data in _single_mutations(ENVELOPE):
        _same_outcome(lambda d: parse_envelope(dump_json(d)), _envelope_checked, data)
