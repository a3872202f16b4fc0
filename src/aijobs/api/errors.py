"""Every error leaves the API in the reference's envelope: {"error", "detail", "status_code"}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from aijobs import errors
from aijobs.api.schemas import ErrorEnvelope
from aijobs.logsafe import encodable

log = logging.getLogger("aijobs.api")

RETRY_AFTER_SECONDS = 5  # what a 503 asks a client to wait before it tries again

# What each error answer means, for the OpenAPI document (every one is the envelope).
_MEANINGS = {
    400: "Bad request: the body is not valid JSON, or the request is valid but cannot be served "
    "(an unknown model type or framework, a data path outside the data roots or missing, a job "
    "that has already ended)",
    401: "Unauthorized: credentials are required and were missing or invalid (auth applies)",
    403: "Forbidden: the job or model belongs to another principal",
    404: "Not found: no such job or model",
    413: "Payload too large: the body exceeds the configured limit",
    429: "Too many requests: the caller's rate limit, or a queue's pending-job limit, is reached",
    422: "Validation error: a field is missing, of the wrong type, out of range or unknown, or an "
    "Idempotency-Key is sent again with a different request",
    503: "Service unavailable: the job store cannot be reached; retry after Retry-After seconds",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "string"},
    }
}


_CHALLENGE = {
    "WWW-Authenticate": {
        "description": "How to authenticate: Bearer (an API key or a JWT)",
        "schema": {"type": "string"},
    }
}
_RATE_LIMIT = {
    name: {"description": meaning, "schema": {"type": "string"}}
    for name, meaning in (
        ("RateLimit-Limit", "Requests allowed in the caller's window"),
        ("RateLimit-Remaining", "Requests left in the window"),
        ("RateLimit-Reset", "Seconds until the window ends"),
    )
}

_ENVELOPE = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers an operation can give, as FastAPI's `responses`: each one the envelope,
    as JSON even where the operation's own answer is not (declare_envelope adds its schema).

    A declared 422 replaces FastAPI's default one, whose `detail` is a list: ours is a sentence.
    """
    declared: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        declared[code] = {"description": _MEANINGS[code], "content": _ENVELOPE}
        if code == 503:
            declared[code]["headers"] = _RETRY_AFTER
        if code == 401:
            declared[code]["headers"] = _CHALLENGE
        if code == 429:
            declared[code]["headers"] = {**_RETRY_AFTER, **_RATE_LIMIT}
    return declared


def declare_envelope(spec: dict[str, Any]) -> None:
    """Put the envelope's schema among the OpenAPI document's components."""
    schema = ErrorEnvelope.model_json_schema(mode="serialization")
    spec.setdefault("components", {}).setdefault("schemas", {})["ErrorEnvelope"] = schema


_TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    413: "Payload too large",
    429: "Too many requests",
}


def envelope(status_code: int, error: str, detail: str, **headers: str) -> JSONResponse:
    # A detail may echo the caller's input, a lone surrogate included.
    body = {"error": error, "detail": encodable(detail), "status_code": status_code}
    return JSONResponse(body, status_code=status_code, headers=headers or None)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation(errs: list[dict[str, Any]]) -> tuple[int, str, str]:
    """(status, error, detail) for pydantic errors, in words a user can act on."""
    if any(e.get("type") == "json_invalid" for e in errs):
        reason = next(e for e in errs if e.get("type") == "json_invalid").get("ctx", {})
        return 400, "Invalid JSON", f"request body is not valid JSON: {reason.get('error', '')}"
    messages = []
    for e in errs:
        name = _field(tuple(e.get("loc", ())))
        if e.get("type") == "missing":
            messages.append(f"{name} is required")
        elif e.get("type") == "extra_forbidden":
            messages.append(f"{name} is not a known field")
        else:
            messages.append(f"{name}: {e.get('msg', 'invalid value')}")
    return 422, "Validation error", "; ".join(messages)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.AIJobsError)
    async def domain_error(_: Request, exc: errors.AIJobsError) -> JSONResponse:
        extra = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status_code == 503 else {}
        if exc.status_code == 401:  # RFC 6750: a 401 says how to authenticate
            extra["WWW-Authenticate"] = 'Bearer realm="aijobs"'
        if isinstance(exc, errors.TooManyRequests):
            extra = exc.headers
        return envelope(exc.status_code, exc.title, exc.detail, **extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, error, detail = describe_validation(list(exc.errors()))
        return envelope(status, error, detail)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        title = _TITLES.get(exc.status_code, "Error")
        # Kept: a 405's Allow names the methods the path does answer.
        return envelope(exc.status_code, title, str(exc.detail), **(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return envelope(500, "Internal server error", f"{type(exc).__name__}: the error is logged")
