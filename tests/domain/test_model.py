"""Identifiers and the rules records check on construction."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanpay.domain.model import (
    Order,
    OrderStatus,
    check_amount,
    check_description,
    new_order_id,
    new_out_trade_no,
)
from scanpay.errors import ValidationError
from scanpay.wechat.fields import check_out_trade_no

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@settings(max_examples=60)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 12, 31),
        timezones=st.just(timezone(timedelta(hours=8))),
    ),
    st.randoms(use_true_random=False),
)
def test_out_trade_no_follows_wechat_rule(now: datetime, rng: random.Random) -> None:
    value = new_out_trade_no(now, rng.choice)
    assert check_out_trade_no(value) == value
    assert 6 <= len(value) <= 32
    assert value[2:14] == now.astimezone(UTC).strftime("%y%m%d%H%M%S")


def test_out_trade_no_unique_under_concurrency() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        values = list(pool.map(lambda _: new_out_trade_no(NOW), range(5_000)))
    assert len(set(values)) == len(values)


def test_order_ids_are_long_random_and_distinct() -> None:
    ids = {new_order_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("ord_") and len(i) == 26 for i in ids)


@pytest.mark.parametrize("amount", [0, -1, 2**31, True, 1.5, "1"])
def test_bad_amounts_are_refused(amount: object) -> None:
    with pytest.raises(ValidationError):
        check_amount(amount)


@pytest.mark.parametrize("text", ["", "   ", "x" * 128, "a\x00b", "tab\there"])
def test_bad_descriptions_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        check_description(text)


def test_order_checks_itself() -> None:
    with pytest.raises(ValidationError):
        Order("ord_x", 0, "Tea", OrderStatus.PENDING, NOW, NOW)
    with pytest.raises(ValidationError):
        Order("ord_x", 1, "Tea", OrderStatus.PENDING, NOW, NOW, currency="USD")
