"""API faults (SYSTEMERROR, HTTP 5xx, FREQUENCY_LIMITED, slow, v3 signature faults) as scanpay's
clients see them; switched by the control API, per request by ``X-Sim-Fault``, and from the
``scanpay simulator`` command line."""

from __future__ import annotations

import argparse

import httpx
import pytest

from scanpay.cli import simulator_cmd
from scanpay.client.retry import NO_RETRY, RetryPolicy
from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.errors import (
    RetryableApiError,
    SignatureError,
    TransportError,
    ValidationError,
)
from scanpay.simulator import Simulator
from scanpay.simulator.faults import (
    DEFAULTS,
    Fault,
    FaultSpec,
    Scope,
    parse_fault,
    parse_header,
)
from scanpay.wechat.states import TradeState

from .conftest import make_v3_client, order
from .test_v3_flow import native


async def no_sleep(seconds: float) -> None:
    return None


def v2_client(sim: Simulator, retry: RetryPolicy = NO_RETRY) -> V2Client:
    return V2Client(
        sim.credentials.v2_merchant(),
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=sim.app),
        retry=retry,
        sleep=no_sleep,
    )


def v3(sim: Simulator, retry: RetryPolicy = NO_RETRY) -> V3Client:
    """scanpay's V3Client in public-key mode with a chosen retry policy and no real sleeping."""
    return make_v3_client(sim, retry=retry, sleep=no_sleep)


async def set_faults(raw: httpx.AsyncClient, faults: dict[str, object]) -> dict[str, object]:
    answer = await raw.post("/sim/faults", json={"faults": faults})
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("system_error", RetryableApiError, "SYSTEMERROR"),
        ("frequency_limited", RetryableApiError, "FREQUENCY_LIMITED"),
        ("http_5xx", TransportError, "TRANSPORT_ERROR"),
    ],
)
async def test_v2_api_faults(
    sim: Simulator, raw: httpx.AsyncClient, fault: str, error: type[Exception], code: str
) -> None:
    await set_faults(raw, {fault: 1})
    async with v2_client(sim) as client:
        with pytest.raises(error) as caught:
            await client.create_native_order(order())
        assert getattr(caught.value, "code", "") == code
        await raw.delete("/sim/faults")
        await client.create_native_order(order())  # the call was not applied before
    assert len(sim.ledger.orders()) == 1


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("system_error", 500, "SYSTEM_ERROR"),
        ("frequency_limited", 429, "FREQUENCY_LIMITED"),
        ("http_5xx", 503, "HTTP_503"),
    ],
)
async def test_v3_api_faults(
    sim: Simulator, raw: httpx.AsyncClient, fault: str, status: int, code: str
) -> None:
    await set_faults(raw, {fault: {"value": 1, "times": 1}})
    async with v3(sim) as client:
        with pytest.raises(RetryableApiError) as caught:
            await client.create_native_order(native(sim))
        assert caught.value.code == code
        assert caught.value.http_status == status
        # times=1: the fault switched itself off, the same call now goes through
        assert (await client.create_native_order(native(sim))).startswith("weixin://")
    assert (await raw.get("/sim/faults")).json()["faults"] == {}


async def test_clients_retry_through_transient_faults(
    sim: Simulator, raw: httpx.AsyncClient
) -> None:
    await set_faults(raw, {"system_error": {"value": 1, "times": 2}})
    async with v2_client(sim, RetryPolicy(attempts=3)) as client:
        await client.create_native_order(order())
    await set_faults(raw, {"frequency_limited": {"value": 1, "times": 2}})
    async with v3(sim, RetryPolicy(attempts=3)) as client:
        await client.create_native_order(native(sim))
        assert (await client.query_by_out_trade_no("v3-order-01")).trade_state is TradeState.NOTPAY
    events = [e["fault"] for e in (await raw.get("/sim/faults")).json()["events"]]
    assert events == ["system_error"] * 2 + ["frequency_limited"] * 2


async def test_per_request_header(sim: Simulator, raw: httpx.AsyncClient) -> None:
    answer = await raw.post(
        "/pay/orderquery", content=b"<xml/>", headers={"X-Sim-Fault": "http_5xx"}
    )
    assert answer.status_code == 503
    answer = await raw.get(
        "/v3/pay/transactions/out-trade-no/x?mchid=1", headers={"X-Sim-Fault": "system_error"}
    )
    assert answer.status_code == 500
    assert answer.json()["code"] == "SYSTEM_ERROR"
    assert answer.headers["Wechatpay-Signature"]  # WeChat signs its error answers
    slow = await raw.post(
        "/pay/orderquery", content=b"<xml/>", headers={"X-Sim-Fault": "slow=0.05"}
    )
    assert slow.status_code == 200
    events = (await raw.get("/sim/faults")).json()["events"]
    assert [e["fault"] for e in events] == ["http_5xx", "system_error", "slow"]
    # and nothing stays switched on
    assert (await raw.post("/pay/orderquery", content=b"<xml/>")).status_code == 200


async def test_bad_header_is_refused(raw: httpx.AsyncClient) -> None:
    answer = await raw.post("/pay/orderquery", content=b"<xml/>", headers={"X-Sim-Fault": "nope"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "INVALID_FAULT"


async def test_path_filter(sim: Simulator, raw: httpx.AsyncClient) -> None:
    await set_faults(
        raw, {"system_error": {"value": 1, "path": "/v3/pay/transactions/out-trade-no"}}
    )
    async with v3(sim) as client:
        await client.create_native_order(native(sim))  # prepay is not affected
        with pytest.raises(RetryableApiError):
            await client.query_by_out_trade_no("v3-order-01")


async def test_v3_answer_with_a_probe_signature(sim: Simulator, raw: httpx.AsyncClient) -> None:
    await set_faults(raw, {"bad_signature": {"value": 1, "scope": "api", "times": 1}})
    async with v3(sim) as client:
        with pytest.raises(SignatureError):
            await client.create_native_order(native(sim))


async def test_control_api(raw: httpx.AsyncClient) -> None:
    state = await set_faults(raw, {"drop_notifications": 0.3, "slow": {"value": 1, "times": 2}})
    assert state["faults"] == {
        "drop_notifications": {"value": 0.3, "times": None, "path": "", "scope": ""},
        "slow": {"value": 1.0, "times": 2, "path": "", "scope": ""},
    }
    merged = await raw.post(
        "/sim/faults", json={"faults": {"http_5xx": 0.5}, "replace": False, "seed": 9}
    )
    assert set(merged.json()["faults"]) == {"drop_notifications", "slow", "http_5xx"}
    assert merged.json()["seed"] == 9
    cleared = await raw.delete("/sim/faults")
    assert cleared.json()["faults"] == {}
    for body in (
        {"faults": {"nope": 1}},
        {"faults": {"drop_notifications": 2}},
        {"faults": {"duplicate_notifications": 0}},
        {"faults": {"slow": "fast"}},
        {"scenario": "unknown"},
        {"seed": "x"},
        {"other": 1},
        [1],
    ):
        refused = await raw.post("/sim/faults", json=body)
        assert refused.status_code == 400, body
        assert refused.json()["error"] == "INVALID_FAULT"


def test_fault_text() -> None:
    assert parse_fault("drop_notifications=0.3") == FaultSpec(Fault.DROP_NOTIFICATIONS, 0.3)
    assert parse_fault("system_error=1:2@api") == FaultSpec(
        Fault.SYSTEM_ERROR, 1.0, 2, scope=Scope.API
    )
    assert parse_fault("duplicate_notifications").value == 2
    assert [s.fault for s in parse_header("scenario=unstable_api, slow=1")] == [
        Fault.SYSTEM_ERROR,
        Fault.HTTP_5XX,
        Fault.FREQUENCY_LIMITED,
        Fault.SLOW,
    ]
    for bad in ("drop_notifications=x", "x=1", "slow=1@nowhere", "system_error=1:0"):
        with pytest.raises(ValidationError):
            parse_fault(bad)


def test_command_line_flags(sim: Simulator) -> None:
    parser = argparse.ArgumentParser()
    simulator_cmd.configure(parser)
    args = parser.parse_args(
        [
            "--fault",
            "drop_notifications=0.3",
            "--fault",
            "system_error=1:2",
            "--scenario",
            "clock_skew",
            "--fault-seed",
            "4",
        ]
    )
    simulator_cmd.apply_fault_flags(sim, args)
    state = sim.faults.snapshot()
    assert set(state["faults"]) == {"drop_notifications", "system_error", "stale_timestamp"}
    assert state["faults"]["system_error"]["times"] == 2
    assert state["seed"] == 4


@pytest.mark.parametrize("fault", list(Fault))
async def test_every_fault_switches_all_three_ways(
    sim: Simulator, raw: httpx.AsyncClient, fault: Fault
) -> None:
    """Control API, command-line flag and X-Sim-Fault header all accept every fault."""
    state = await set_faults(raw, {fault.value: None})
    assert state["faults"] == {fault.value: FaultSpec(fault, DEFAULTS[fault]).to_json()}
    await raw.delete("/sim/faults")

    parser = argparse.ArgumentParser()
    simulator_cmd.configure(parser)
    simulator_cmd.apply_fault_flags(sim, parser.parse_args(["--fault", fault.value]))
    assert set(sim.faults.snapshot()["faults"]) == {fault.value}
    sim.faults.clear()

    text = f"{fault.value}=0.01:1" if fault is Fault.SLOW else f"{fault.value}:1"
    assert [s.fault for s in parse_header(text)] == [fault]
    answer = await raw.post("/pay/orderquery", content=b"<xml/>", headers={"X-Sim-Fault": text})
    assert "INVALID_FAULT" not in answer.text  # accepted (its effect: the tests above)
