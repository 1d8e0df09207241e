"""The joins between the second stage's parts, over HTTP (in-process service, simulator,
real loopback webhook receivers): an order's webhook deliveries in its console timeline,
re-sending them from the console (support and above, CSRF, audited), disabled endpoints in
the alerts inbox, the webhook backlog on ``/metrics``, and the console's reconciliation
pages in both languages."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scanpay.domain.model import utcnow
from scanpay.domain.operators import Role
from scanpay.domain.reconciliation import (
    Difference,
    DifferenceKind,
    DifferenceState,
    Entry,
    Report,
    ReportStatus,
    Totals,
)
from scanpay.simulator import PayOutcome, Simulator
from scanpay.store.operators import OperatorStore
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.web.app import create_app
from scanpay.web.console.passwords import hash_password
from scanpay.webhooks.runtime import WebhookRuntime
from scanpay.webhooks.signing import generate_secret
from tests.web.conftest import BASE_URL, SHOP_KEY, LateASGITransport, SettingsFactory
from tests.web.test_console import PASSWORD, sign_in
from tests.webhooks.receiver import Receiver, check_signed, serve_receiver

AUTH = {"Authorization": f"Bearer {SHOP_KEY}"}
METRICS_TOKEN = "metrics-token-for-crosslink-tests"


@dataclass
class Rig:
    app: Any
    sim: Simulator
    http: httpx.AsyncClient
    receiver: Receiver
    gone: Receiver
    secret: str

    @property
    def webhooks(self) -> WebhookRuntime:
        runtime: WebhookRuntime = self.app.state.webhooks
        return runtime

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL)

    async def backlog(self) -> dict[str, float]:
        answer = await self.http.get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert answer.status_code == 200
        wanted = (
            "scanpay_events_unpublished",
            "scanpay_webhook_deliveries_pending",
            "scanpay_webhook_deliveries_due",
            "scanpay_webhook_oldest_due_age_seconds",
        )
        return {
            f.name: f.samples[0].value
            for f in text_string_to_metric_families(answer.text)
            if f.name in wanted
        }

    async def paid_order(self, amount: int) -> dict[str, Any]:
        created = await self.http.post(
            "/api/orders", json={"amount": amount, "description": "Tea"}, headers=AUTH
        )
        assert created.status_code == 201, created.text
        order: dict[str, Any] = created.json()
        await self.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
        assert await self.sim.deliver_due_notifications() >= 1
        return order


async def arrived(receiver: Receiver, count: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while len(receiver.received) < count:
        assert loop.time() < deadline, f"{len(receiver.received)} of {count} arrived"
        await asyncio.sleep(0.02)


@pytest.fixture
async def rig(make_settings: SettingsFactory) -> AsyncIterator[Rig]:
    late = LateASGITransport()
    sim = Simulator.create(notify_transport=late)
    creds = sim.credentials
    secret = generate_secret()
    with serve_receiver() as receiver, serve_receiver() as gone:
        settings = make_settings(
            appid=creds.appid,
            mchid=creds.mchid,
            api_v2_key=creds.api_v2_key.reveal(),
            reconciler_enabled=False,
            console_sign_in_delay_seconds=0,
            metrics_token=METRICS_TOKEN,
            webhook_url=receiver.url,
            webhook_secret=secret,
            webhook_allow_private=True,
            webhook_retry_schedule="0,0.2,0.2",
            webhook_poll_seconds=0.05,
            webhooks_enabled=False,  # the test starts the worker when it wants deliveries
        )
        app = create_app(settings, wechat_transport=httpx.ASGITransport(app=sim.app))
        late.app = app
        operators = OperatorStore(app.state.scanpay.store.engine)
        for name, role in (("sam", Role.SUPPORT), ("vic", Role.VIEWER)):
            operators.add(name, role, hash_password(PASSWORD), utcnow())
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        rig = Rig(app, sim, http, receiver, gone, secret)
        try:
            async with rig.webhooks.running():  # the settings endpoint; no worker yet
                yield rig
        finally:
            await http.aclose()
            await app.state.scanpay.aclose()
            await sim.stop()
            sim.close()


def timeline_webhooks(html: str) -> list[str]:
    """The text of each webhook entry of an order's timeline."""
    items = re.findall(
        r'<li class="entry entry-webhook" data-kind="webhook">(.*?)</li>', html, re.S
    )
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", item)) for item in items]


async def test_webhook_deliveries_in_the_console_and_the_backlog_metric(rig: Rig) -> None:
    made = await rig.http.post("/api/webhook-endpoints", json={"url": rig.gone.url}, headers=AUTH)
    assert made.status_code == 201, made.text
    gone_id = made.json()["id"]
    rig.gone.script[:] = [(410, {}), (410, {})]  # whichever order's event comes first
    rig.receiver.script[:] = [(500, {})]  # the settings endpoint: refused once, then 200

    before = await rig.backlog()
    order = await rig.paid_order(2500)
    other = await rig.paid_order(300)
    written = await rig.backlog()
    assert written["scanpay_events_unpublished"] > before["scanpay_events_unpublished"]
    assert written["scanpay_webhook_deliveries_pending"] == 0  # nothing published yet
    outbox = rig.webhooks.outbox
    while await outbox.publish():
        pass
    published = await rig.backlog()
    assert published["scanpay_events_unpublished"] == 0
    # two order.paid events, each for the settings endpoint and the API endpoint
    assert published["scanpay_webhook_deliveries_pending"] == 4
    assert published["scanpay_webhook_deliveries_due"] == 4
    assert published["scanpay_webhook_oldest_due_age_seconds"] >= 0

    async with rig.webhooks.worker.running():
        await arrived(rig.receiver, 3)  # one refused, then both delivered
        await arrived(rig.gone, 1)  # 410: the endpoint is turned off
        for _ in range(200):
            if (await rig.backlog())["scanpay_webhook_deliveries_pending"] == 0:
                break
            await asyncio.sleep(0.02)
        drained = await rig.backlog()
        assert drained["scanpay_webhook_deliveries_pending"] == 0
        assert drained["scanpay_webhook_deliveries_due"] == 0
        check_signed(rig.receiver.accepted(), rig.secret)
        paid_ids = {r.json["data"]["id"]: r.id for r in rig.receiver.accepted()}
        # the two orders' deliveries run side by side: the order whose event met the scripted
        # refusal is the one whose timeline is read below
        if paid_ids[order["id"]] != rig.receiver.received[0].id:
            order, other = other, order
        event_id = paid_ids[order["id"]]

        async with rig.client() as http:
            csrf = await sign_in(http, "sam")
            page = (await http.get(f"/console/orders/{order['id']}?lang=en")).text
            lines = timeline_webhooks(page)
            mine = [line for line in lines if "we_settings" in line]
            assert len(mine) == 2, lines
            first, second = sorted(mine, key=lambda line: "HTTP status 200" in line)
            assert event_id in first
            assert event_id in second
            assert "HTTP status 500" in first
            assert "Refused by the receiver" in first
            assert "HTTP status 200" in second
            assert "Delivered (2xx)" in second
            assert re.search(r"latency \d+ ms", second)
            assert rig.receiver.url.removesuffix("/webhooks") in second
            gone_line = next(line for line in lines if gone_id in line)
            assert "HTTP status 410" in gone_line
            assert other["id"] not in " ".join(lines)
            assert rig.secret not in page
            assert "whsec_" not in page
            zh = (await http.get(f"/console/orders/{order['id']}?lang=zh-CN")).text
            assert "HTTP 状态码" in zh
            assert "已送达（2xx）" in zh

            # the alerts inbox shows the endpoint the 410 turned off
            alerts = (await http.get("/console/alerts?lang=en")).text
            assert "Webhook endpoint disabled" in alerts
            assert gone_id in alerts
            assert "410 Gone" in alerts

            # re-send: refused without the CSRF token, for another order's event, for a viewer
            resend = f"/console/orders/{order['id']}/resend-webhooks"
            assert 'action="' + resend + '"' in page
            assert (await http.post(resend, data={"note": "x"})).status_code == 403
            wrong = {"csrf_token": csrf, "event": paid_ids[other["id"]]}
            assert (await http.post(resend, data=wrong)).status_code == 422
            assert (
                await http.post(resend, data={"csrf_token": csrf, "event": "x"})
            ).status_code == 422
            assert len(rig.receiver.received) == 3
            http.cookies.clear()
            viewer_csrf = await sign_in(http, "vic")
            viewer_page = (await http.get(f"/console/orders/{order['id']}")).text
            assert resend not in viewer_page
            refused = await http.post(resend, data={"csrf_token": viewer_csrf})
            assert refused.status_code == 403
            await asyncio.sleep(0.3)
            assert len(rig.receiver.received) == 3  # nothing was queued

            http.cookies.clear()
            csrf = await sign_in(http, "sam")
            gone_before = len(rig.gone.received)
            done = await http.post(resend, data={"csrf_token": csrf, "event": event_id})
            assert done.status_code == 303
            assert done.headers["location"].endswith("?done=resend_webhook")
            await arrived(rig.receiver, 4)
            again = rig.receiver.received[3]
            assert again.id == event_id  # the same webhook-id as the first delivery
            check_signed([again], rig.secret)
            assert len(rig.gone.received) == gone_before  # a disabled endpoint gets nothing
            for _ in range(100):
                page = (await http.get(f"/console/orders/{order['id']}?lang=en")).text
                if len([x for x in timeline_webhooks(page) if "we_settings" in x]) == 3:
                    break
                await asyncio.sleep(0.02)
            assert len([x for x in timeline_webhooks(page) if "we_settings" in x]) == 3
            audit = (await http.get("/console/audit?lang=en")).text
            rows = re.findall(r"<tr><td>.*?</tr>", audit, re.S)
            resends = [r for r in rows if "<td>re-send webhooks</td>" in r]
            assert any("sam" in r and "queued=1" in r for r in resends), resends
            assert sum("vic" in r and "role" in r for r in resends) == 1
            assert sum("sam" in r and "why=csrf" in r for r in resends) == 1
            assert sum("not this order" in r for r in resends) == 2
            assert len(resends) == 5


def _report(day: date, differences: list[Difference]) -> Report:
    return Report(
        day=day,
        status=ReportStatus.DIFFERENCES if differences else ReportStatus.MATCHED,
        api_version="v2",
        bill=Totals(payments=3, payment_amount=4500, refunds=1, refund_amount=500, fees=27),
        ledger=Totals(payments=2, payment_amount=4300, refunds=1, refund_amount=500),
        rows=4,
        differences=differences,
        run_at=datetime(2025, 3, 3, 2, 30, tzinfo=UTC),
    )


async def test_reconciliation_pages(rig: Rig) -> None:
    order = await rig.paid_order(1999)
    store: ReconciliationStore = rig.app.state.reconciliations
    kind, entry = DifferenceKind, Entry
    found = [
        Difference(kind.MISSING_LOCAL, entry.PAYMENT, "sp-lost-1", out_trade_no="sp-lost-1",
                   transaction_id="4200000001", remote_amount=200),
        Difference(kind.AMOUNT_MISMATCH, entry.PAYMENT, "sp-amt-1", out_trade_no="sp-amt-1",
                   order_id=order["id"], local_amount=1999, remote_amount=2100),
        Difference(kind.AMOUNT_MISMATCH, entry.PAYMENT, "sp-amt-2", out_trade_no="sp-amt-2",
                   local_amount=100, remote_amount=90),
        Difference(kind.MISSING_REMOTE, entry.REFUND, "rf-held", out_refund_no="rf-held",
                   local_amount=500, state=DifferenceState.HELD),
    ]  # fmt: skip
    await store.run(store.save, _report(date(2025, 3, 1), []), [])
    await store.run(store.save, _report(date(2025, 3, 2), found), [])
    async with rig.client() as http:
        await sign_in(http, "vic")  # reading needs no more than a viewer
        listed = (await http.get("/console/reconciliation?lang=en")).text
        assert 'href="/console/reconciliation"' in listed  # in the navigation
        rows = re.findall(r'<tr data-day="([0-9-]+)" data-status="(\w+)">(.*?)</tr>', listed, re.S)
        assert [(day, status) for day, status, _ in rows] == [
            ("2025-03-02", "differences"),
            ("2025-03-01", "matched"),
        ]
        cells = dict(re.findall(r'data-kind="(\w+)">(\d+)<', rows[0][2]))
        assert cells == {"missing_local": "1", "missing_remote": "0", "amount_mismatch": "2",
                         "status_mismatch": "0", "refund_mismatch": "0"}  # fmt: skip
        assert 'data-open="3"' in rows[0][2]
        assert 'data-open="0"' in rows[1][2]

        day = (await http.get("/console/reconciliation/2025-03-02?lang=en")).text
        assert 'data-status="differences"' in day
        kinds = re.findall(r'<tr class="difference" data-kind="(\w+)" data-number="([^"]+)"', day)
        assert kinds[:3] == [("missing_local", "sp-lost-1"), ("amount_mismatch", "sp-amt-1"),
                             ("amount_mismatch", "sp-amt-2")]  # fmt: skip
        assert kinds[3:] == [("missing_remote", "rf-held")]  # in the held table
        assert f'href="/console/orders/{order["id"]}"' in day
        assert "¥21.00" in day
        assert "¥19.99" in day
        assert "¥0.27" in day
        assert "Missing here (WeChat Pay has it)" in day

        zh = (await http.get("/console/reconciliation/2025-03-02?lang=zh-CN")).text
        assert "对账" in zh
        assert "本地缺失（微信有，本地无）" in zh
        assert "有差异" in zh
        zh_list = (await http.get("/console/reconciliation?lang=zh-CN")).text
        assert "一致" in zh_list
        assert "已对账的日期" in zh_list

        # the store raised the open differences as alerts: the inbox shows them readably
        alerts = (await http.get("/console/alerts?lang=en")).text
        reconciled = re.findall(
            r'<li class="alert" id="alert-\d+" data-reason="reconciliation_difference">(.*?)</li>',
            alerts,
            re.S,
        )
        assert len(reconciled) == 3  # the open ones; the held one is not reported yet
        mismatch = next(item for item in reconciled if "sp-amt-1" in item)
        assert "amount here" in mismatch
        assert "¥19.99" in mismatch
        assert "¥21.00" in mismatch
        assert "Amount mismatch" in mismatch
        assert f"/console/orders/{order['id']}" in mismatch
        assert 'href="/console/reconciliation/2025-03-02"' in mismatch
        assert all("None" not in item for item in reconciled)
        zh_alerts = (await http.get("/console/alerts?lang=zh-CN")).text
        assert "对账差异" in zh_alerts
        assert "本地缺失（微信有，本地无）" in zh_alerts

        for path in ("/console/reconciliation/2025-03-05", "/console/reconciliation/not-a-day",
                     "/console/reconciliation/2025-02-30"):  # fmt: skip
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"].startswith("text/html")
        assert (await http.get("/console/reconciliation?before=yesterday")).status_code == 422
        older = (await http.get("/console/reconciliation?before=2025-03-02")).text
        assert "2025-03-01" in older
        assert 'data-day="2025-03-02"' not in older
        http.cookies.clear()
        signed_out = await http.get("/console/reconciliation")
        assert signed_out.status_code == 303


async def test_without_the_console_the_backlog_is_still_measured(
    make_settings: SettingsFactory,
) -> None:
    app = create_app(
        make_settings(console_enabled=False, metrics_token=METRICS_TOKEN, reconciler_enabled=False)
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            scraped = await http.get(
                "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
            )
            assert "scanpay_webhook_deliveries_due 0.0" in scraped.text
            assert (await http.get("/console/reconciliation")).status_code == 404
    finally:
        await app.state.scanpay.aclose()
