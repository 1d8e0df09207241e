"""``scanpay reconcile`` (exit 0 matched, 1 differences, 2 could not reconcile; text and JSON)
and ``GET /api/reconciliations/{date}`` of the shop API, against the simulator over HTTP."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from scanpay.cli.main import main as cli_main
from scanpay.cli.reconcile_cmd import main
from scanpay.config import Settings
from scanpay.domain.reconciliation import ReportStatus
from scanpay.simulator import Simulator
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.web.app import create_app
from tests.web.conftest import IsolatedSettings

from .kit import make_simulator, open_world, shanghai

D1 = date(2025, 3, 1)
SHOP_KEY = "shop-key-for-reconciliation-tests"


def settings_for(sim: Simulator, engine: sa.Engine, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "shop_api_key": SHOP_KEY,
        "wechat_base_url": "http://sim.test",
        "appid": sim.credentials.appid,
        "mchid": sim.credentials.mchid,
        "api_v2_key": sim.credentials.api_v2_key.reveal(),
        **overrides,
    }
    return IsolatedSettings(**values)


@pytest.fixture
def sim(credentials: tuple[MerchantCredentials, SimulatorKeys]) -> Simulator:
    return make_simulator(credentials, shanghai(D1, 11))


def pay(sim: Simulator, engine: sa.Engine, numbers: dict[str, list[str]]) -> None:
    async def go() -> None:
        async with open_world(sim, "v2", engine) as world:
            for number, faults in numbers.items():
                sim.clock.advance(60)
                world.shop_records(number, 300, await world.wechat_pays(number, 300, *faults))
            world.flush()

    asyncio.run(go())


def run(sim: Simulator, engine: sa.Engine, day: str, fmt: str = "text") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        settings_for(sim, engine), day, fmt, out=out, err=err,
        transport=httpx.ASGITransport(app=sim.app), clock=sim.clock.now,
    )  # fmt: skip
    return code, out.getvalue(), err.getvalue()


def test_exit_status_and_output(sim: Simulator, engine: sa.Engine) -> None:
    code, out, err = run(sim, engine, "2025-03-01")
    assert code == 2
    assert out == ""
    assert "could not reconcile 2025-03-01: BILL_NOT_READY" in err  # no trades: no bill

    pay(sim, engine, {"cli000001": [], "cli000002": []})
    code, out, err = run(sim, engine, "2025-03-01")
    assert (code, err) == (0, "")
    assert "reconciliation 2025-03-01 (API v2): matched, 2 bill rows" in out
    assert "6.00" in out  # both sides' payment totals, in yuan

    pay(sim, engine, {"cli000003": ["bill_amount=5"]})
    code, out, err = run(sim, engine, "2025-03-01", "json")
    assert code == 1
    report = json.loads(out)
    assert report["status"] == "differences"
    assert report["counts"]["amount_mismatch"] == 1
    [difference] = report["differences"]
    assert (difference["number"], difference["local_amount"], difference["remote_amount"]) == (
        "cli000003",
        300,
        305,
    )
    assert report["totals"]["bill"]["payment_amount"] == 905
    assert report["totals"]["ledger"]["payment_amount"] == 900

    for bad in ("2025-3-1", "2025-02-30", "tomorrow"):
        assert run(sim, engine, bad)[0] == 2
    code, _, err = run(sim, engine, "2025-03-02")  # in the future on the simulator's clock
    assert code == 2
    assert "INVALID_DATE" in err


def test_command_is_registered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["reconcile", "--help"])
    assert "--date" in capsys.readouterr().out
    missing = tmp_path / "missing.env"
    assert cli_main(["reconcile", "--date", "2025-03-01", "--env-file", str(missing)]) == 2


async def test_shop_api_serves_reports(sim: Simulator, engine: sa.Engine) -> None:
    await asyncio.to_thread(pay, sim, engine, {"api000001": [], "api000002": ["bill_revoked"]})
    app = create_app(settings_for(sim, engine), httpx.ASGITransport(app=sim.app))
    try:
        await check_api(app, sim, engine)
    finally:
        await app.state.scanpay.aclose()


async def check_api(app: FastAPI, sim: Simulator, engine: sa.Engine) -> None:
    auth = {"Authorization": f"Bearer {SHOP_KEY}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shop.test"
    ) as http:
        assert (await http.get("/api/reconciliations/2025-03-01")).status_code == 401
        missing = await http.get("/api/reconciliations/2025-03-01", headers=auth)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "NOT_FOUND"
        bad = await http.get("/api/reconciliations/2025-13-01", headers=auth)
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "INVALID_DATE"

        code, _, _ = await asyncio.to_thread(run, sim, engine, "2025-03-01")
        assert code == 1
        found = await http.get("/api/reconciliations/2025-03-01", headers=auth)
        assert found.status_code == 200
        body = found.json()
        assert body["date"] == "2025-03-01"
        assert body["status"] == "differences"
        assert [(d["kind"], d["number"]) for d in body["differences"]] == [
            ("status_mismatch", "api000002")
        ]
        assert body["held"] == []


async def test_serve_reconciles_yesterday_by_itself(sim: Simulator, engine: sa.Engine) -> None:
    await asyncio.to_thread(pay, sim, engine, {"srv000001": [], "srv000002": []})
    sim.clock.advance((shanghai(date(2025, 3, 2), 10, 1) - sim.clock.now()).total_seconds())
    settings = settings_for(sim, engine, reconcile_poll_seconds=0.05)
    app = create_app(settings, httpx.ASGITransport(app=sim.app), clock=sim.clock.now)
    store: ReconciliationStore = app.state.reconciliations
    report = None
    async with app.router.lifespan_context(app):
        for _ in range(400):
            report = await asyncio.to_thread(store.report, D1)
            if report is not None:
                break
            await asyncio.sleep(0.05)
    assert report is not None
    assert report.status is ReportStatus.MATCHED
    assert (report.bill.payments, report.ledger.payments) == (2, 2)
