"""schemathesis over the shop API's OpenAPI document, in-process: generated requests (valid
and invalid) against every shop route, with the bearer key; no 5xx, and every answer's
status code and body conform to the document."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NOT_SET
from schemathesis.core.result import Ok

from tests.web.conftest import SHOP_KEY, Shop

# The status stream never ends for a pending order; its contract is tested in test_events.
SKIPPED = {("GET", "/api/orders/{order_id}/events")}
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


_STRATEGIES: dict[int, st.SearchStrategy[Any]] = {}


def shop_strategies(shop: Shop) -> st.SearchStrategy[Any]:
    """Cases for every shop operation (the document is the same for every app: cached)."""
    if _STRATEGIES:
        return next(iter(_STRATEGIES.values()))
    schema = schemathesis.openapi.from_dict(shop.app.openapi())
    strategies = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), "the OpenAPI document must load"
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if operation.path.startswith("/api/") and key not in SKIPPED:
            strategies.append(operation.as_strategy())
    assert len(strategies) >= 6
    _STRATEGIES[0] = st.one_of(strategies)
    return _STRATEGIES[0]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(data=st.data())
async def test_shop_api_has_no_server_errors(shop: Shop, data: st.DataObject) -> None:
    case = data.draw(shop_strategies(shop))
    headers = {**(case.headers or {}), "Authorization": f"Bearer {SHOP_KEY}"}
    kwargs: dict[str, Any] = {"params": case.query, "headers": headers}
    if case.body is not None and not isinstance(case.body, type(NOT_SET)):
        kwargs["json"] = case.body
    response = await shop.http.request(case.method, case.formatted_path, **kwargs)
    case.validate_response(response, checks=CHECKS)
