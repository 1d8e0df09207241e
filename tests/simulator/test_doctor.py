"""``scanpay doctor`` (the command, over real HTTP) against the deliberately naive handler of
``examples/naive_notify.py``: the checks it lacks are reported as failures, by case, and the
exit status is 1; what it does check passes. Both report formats are exercised."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from scanpay.cli.main import main
from scanpay.client.v2 import V2Client
from scanpay.simulator import Simulator
from scanpay.simulator.doctor import looks_paid
from scanpay.wechat.v2.orders import UnifiedOrder

from .live import serve_asgi, serve_simulator

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "naive_notify.py"
# what the naive handler gets wrong, and so what must be reported as failed
MISSING_CHECKS = {
    "xml_entity", "wrong_amount", "other_mch_id", "other_appid",
    "duplicates", "after_delay", "out_of_order",
}  # fmt: skip


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("naive_notify", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> Iterator[tuple[Simulator, str, str]]:
    """The simulator and the naive shop, each on its own loopback port."""
    naive = load_example()
    with serve_simulator() as (sim, sim_url), serve_asgi(naive.app, "naive-shop") as shop_url:
        mp = pytest.MonkeyPatch()
        mp.setenv("NAIVE_API_V2_KEY", sim.credentials.api_v2_key.reveal())
        try:
            yield sim, sim_url, shop_url
        finally:
            mp.undo()


def create_order(sim: Simulator, sim_url: str, shop_url: str, out_trade_no: str) -> None:
    async def go() -> None:
        async with V2Client(sim.credentials.v2_merchant(), base_url=sim_url) as client:
            await client.create_native_order(
                UnifiedOrder(
                    out_trade_no=out_trade_no,
                    body="Naive tea",
                    total_fee=880,
                    notify_url=f"{shop_url}/notify",
                    product_id="tea",
                )
            )

    asyncio.run(go())


def test_naive_handler_fails_the_missing_checks(
    bench: tuple[Simulator, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, sim_url, shop_url = bench
    create_order(sim, sim_url, shop_url, "naive-1")
    status_url = shop_url + "/orders/{out_trade_no}/status"
    args = ["doctor", "--simulator", sim_url, "--out-trade-no", "naive-1",
            "--status-url", status_url, "--delay", "0.1", "--format", "json"]  # fmt: skip
    assert main(args) == 1
    report = json.loads(capsys.readouterr().out)
    failed = {c["name"] for c in report["cases"] if c["verdict"] == "fail"}
    assert failed == MISSING_CHECKS
    verdicts = {c["name"]: c["verdict"] for c in report["cases"]}
    for name in ("bad_signature", "other_key", "truncated_body", "xml_external_entity", "genuine"):
        assert verdicts[name] == "pass", report
    # the unknown order was acknowledged, but this order's status did not move
    assert verdicts["unknown_out_trade_no"] == "pass"
    cases = {c["name"]: c for c in report["cases"]}
    # the entity (the first case it acknowledges) turned the unpaid order paid ...
    assert "unpaid" in cases["xml_entity"]["status_before"]
    assert cases["xml_entity"]["status_note"] == "changed to paid"
    # ... and each mismatch "paid" it again
    amount = cases["wrong_amount"]
    assert amount["acknowledged"] == 1
    assert amount["status_note"] == "changed"
    assert amount["status_before"] != amount["status_after"]
    assert report["ok"] is False
    assert report["summary"]["fail"] == len(MISSING_CHECKS)


def test_text_report_without_status_url(
    bench: tuple[Simulator, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, sim_url, shop_url = bench
    create_order(sim, sim_url, shop_url, "naive-2")
    args = ["doctor", "--simulator", sim_url, "--out-trade-no", "naive-2", "--delay", "0"]
    assert main(args) == 1  # the entity is acknowledged: a failure with or without status
    out = capsys.readouterr().out
    assert "[FAIL] xml_entity (must be refused)" in out
    assert "acknowledged a notification it must refuse" in out
    # without a status URL an acknowledged mismatch cannot be judged: a warning, said so
    assert "[WARN] wrong_amount" in out
    assert "give --status-url" in out
    assert "[PASS] bad_signature (must be refused)" in out
    assert "WeChat:   nothing: WeChat Pay never sent this" in out
    assert "1 failed, 4 not judged" in out
    # the same order again: it is paid now, so the doctor refuses to run (exit 2)
    assert main(["doctor", "--simulator", sim_url, "--out-trade-no", "naive-2"]) == 2
    assert "ORDER_NOT_PAYABLE" in capsys.readouterr().err


def test_unreachable_notify_url_is_an_error_not_a_report(
    bench: tuple[Simulator, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    sim, sim_url, _ = bench
    create_order(sim, sim_url, "http://127.0.0.1:9", "naive-3")  # nothing listens there
    assert main(["doctor", "--simulator", sim_url, "--out-trade-no", "naive-3"]) == 2
    assert "NOTIFY_URL_UNREACHABLE" in capsys.readouterr().err
    order = sim.ledger.order("naive-3")
    assert order is not None
    assert order.trade_state.value == "NOTPAY"  # the order was not paid at the simulator


def test_unreachable_simulator_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--simulator", "http://127.0.0.1:9", "--out-trade-no", "x"]) == 2
    assert "cannot use" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("document", "paid"),
    [
        ('{"status": "paid"}', True),
        ('{"state": "SUCCESS", "amount": 5}', True),
        ('{"trade_state": "NOTPAY"}', False),
        ('{"paid": true}', True),
        ('{"paid": false, "status": "pending"}', False),
        ("true", True),
        ("PAID", True),
        ("order 42: unpaid", False),
        ("not paid yet", False),
        ("payment success", True),
        ("<html>waiting</html>", False),
    ],
)
def test_what_counts_as_paid_in_a_status_document(document: str, paid: bool) -> None:
    assert looks_paid(document) is paid
