"""``GET /api/reconciliations/{date}``: a day's reconciliation report (shop API key).

The stored report of the Shanghai day ``date`` (YYYY-MM-DD): status (``matched`` /
``differences``), both sides' totals, the reported differences and the ``missing_remote``
ones still held. 404 ``NOT_FOUND`` when the day has not been reconciled (yet).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from scanpay.domain.reconciliation import parse_day
from scanpay.errors import NotFoundError
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.web.api import ERRORS
from scanpay.web.context import require_shop_key

router = APIRouter(
    prefix="/api", tags=["shop"], responses=ERRORS, dependencies=[Depends(require_shop_key)]
)


@router.get(
    "/reconciliations/{day}",
    summary="A day's reconciliation against WeChat Pay's bill (Asia/Shanghai day)",
)
async def get_reconciliation(day: str, request: Request) -> dict[str, Any]:
    store: ReconciliationStore = request.app.state.reconciliations
    wanted = parse_day(day)
    report = await store.run(store.report, wanted)
    if report is None:
        raise NotFoundError(f"no reconciliation for {wanted.isoformat()}")
    result: dict[str, Any] = report.to_json()
    return result
