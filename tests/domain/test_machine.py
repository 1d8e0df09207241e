"""The state machine table, its no-op rule, and the total trade_state mapping."""

from __future__ import annotations

import pytest

from scanpay.domain import machine
from scanpay.domain.machine import TRANSITIONS, Trigger, step
from scanpay.domain.model import OrderStatus
from scanpay.domain.trade_state import PaymentMeaning, meaning_of, trigger_for
from scanpay.errors import InvalidTransitionError
from scanpay.wechat.states import TradeState


@pytest.mark.parametrize(("edge", "target"), list(TRANSITIONS.items()))
def test_every_row_applies_and_then_repeats_as_a_no_op(
    edge: tuple[OrderStatus, Trigger], target: OrderStatus
) -> None:
    source, trigger = edge
    first = step(source, trigger)
    assert first.to_status is target
    assert first.changes
    if (target, trigger) not in TRANSITIONS:
        again = step(target, trigger)
        assert not again.changes


def test_everything_outside_the_table_is_refused() -> None:
    for status in OrderStatus:
        for trigger in Trigger:
            if (status, trigger) in TRANSITIONS:
                continue
            leads_here = any(t is trigger and to is status for (_, t), to in TRANSITIONS.items())
            if leads_here:
                assert not step(status, trigger).changes
            else:
                with pytest.raises(InvalidTransitionError):
                    step(status, trigger)


def test_paid_cannot_be_closed_and_closed_cannot_be_paid() -> None:
    with pytest.raises(InvalidTransitionError):
        step(OrderStatus.PAID, Trigger.CLOSE)
    with pytest.raises(InvalidTransitionError):
        step(OrderStatus.CLOSED, Trigger.PAYMENT_SUCCEEDED)


def test_every_target_status_has_an_event_type() -> None:
    assert set(TRANSITIONS.values()) <= set(machine.EVENT_FOR)


def test_settled_is_everything_but_pending() -> None:
    assert not machine.is_settled(OrderStatus.PENDING)
    assert all(machine.is_settled(s) for s in OrderStatus if s is not OrderStatus.PENDING)


@pytest.mark.parametrize("state", list(TradeState))
def test_trade_state_mapping_is_total(state: TradeState) -> None:
    meaning = meaning_of(state)
    assert isinstance(meaning, PaymentMeaning)
    trigger = trigger_for(meaning)
    assert trigger is None or isinstance(trigger, Trigger)


def test_only_paid_states_pay_an_order() -> None:
    paying = {s for s in TradeState if trigger_for(meaning_of(s)) is Trigger.PAYMENT_SUCCEEDED}
    assert paying == {TradeState.SUCCESS, TradeState.REFUND}


def test_mermaid_lists_every_transition() -> None:
    text = machine.mermaid()
    assert text.startswith("stateDiagram-v2\n    [*] --> pending\n")
    for (source, trigger), target in TRANSITIONS.items():
        assert f"    {source.value} --> {target.value}: {trigger.value}\n" in text
