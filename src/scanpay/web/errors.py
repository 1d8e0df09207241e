"""One place that turns errors into HTTP answers: ``{"error": {"code": ..., "message": ...}}``.

The scanpay error tree maps to statuses here; request validation and routing errors use the
same JSON shape. Messages never carry secrets (the tree guarantees it for its own errors).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from scanpay.errors import (
    ApiError,
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    ProtocolError,
    ScanpayError,
    TransportError,
    ValidationError,
)

log = logging.getLogger(__name__)


class AuthenticationError(ScanpayError):
    """The shop API key is missing or wrong."""

    code = "UNAUTHORIZED"


class PayloadTooLargeError(ValidationError):
    code = "BODY_TOO_LARGE"


# Most specific first.
STATUS_FOR: Final[tuple[tuple[type[ScanpayError], int], ...]] = (
    (AuthenticationError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidTransitionError, 409),
    (PayloadTooLargeError, 413),
    (ValidationError, 422),
    (ProtocolError, 400),
    (TransportError, 503),
    (ApiError, 502),
)


def status_for(exc: ScanpayError) -> int:
    for cls, status in STATUS_FOR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


async def _scanpay_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ScanpayError)
    status = status_for(exc)
    if status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.code)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(exc.code, exc.message or exc.code), status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {"loc": [str(part) for part in err.get("loc", ())], "message": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    return JSONResponse(
        error_body("INVALID_REQUEST", "the request does not follow the API", fields=fields), 422
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(
        error_body(code, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ScanpayError, _scanpay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
