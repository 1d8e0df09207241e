"""OpenAPI entries for the notification endpoints, which are plain Starlette routes (FastAPI
documents only its own routes); :func:`scanpay.web.app.create_app` adds them to the document."""

from __future__ import annotations

from typing import Any

FAILURE_NOTE = "refused (WeChat Pay re-sends); nothing changed"


def _operation(
    summary: str, request_type: str, answers: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return {
        "post": {
            "tags": ["notifications"],
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {request_type: {"schema": {"type": "string", "format": "binary"}}},
            },
            "responses": answers,
        }
    }


def xml_operation(summary: str) -> dict[str, Any]:
    """A v2 endpoint: XML in, XML acknowledgement out (SUCCESS or FAIL)."""
    xml = {"text/xml": {"schema": {"type": "string"}}}
    answers = {
        "200": {"description": "acknowledged (SUCCESS)", "content": xml},
        "4XX": {"description": FAILURE_NOTE + " (FAIL)", "content": xml},
    }
    return _operation(summary, "text/xml", answers)


def json_operation(summary: str) -> dict[str, Any]:
    """A v3 endpoint: signed JSON in, 204 or a ``{"code": "FAIL", "message": ...}`` body."""
    fail = {"application/json": {"schema": {"type": "object"}}}
    answers: dict[str, dict[str, Any]] = {
        "204": {"description": "acknowledged"},
        "4XX": {"description": FAILURE_NOTE, "content": fail},
        "5XX": {"description": "could not be verified now (WeChat Pay re-sends)", "content": fail},
    }
    return _operation(summary, "application/json", answers)
