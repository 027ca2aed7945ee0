"""The API's answers to what went wrong: JSON `{"error": CODE, "detail": TEXT}`, the code a
short name a program can test, the detail a sentence for the person reading the log."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

# The paths whose errors are JSON, whoever raises them (a route, the router's own 404 and
# 405, a rate limit, the body cap): machines' doors, not pages.
MACHINE_PREFIXES = ("/api/", "/hooks/")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(HTTPException):
    """An HTTPException whose JSON `error` is `code` rather than the status's name."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, detail, headers)
        self.code = code


def is_machine_path(path: str) -> bool:
    return path.startswith(MACHINE_PREFIXES)


def error_response(exc: HTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or CODES.get(exc.status_code, "error")
    return JSONResponse(
        {"error": code, "detail": exc.detail},
        status_code=exc.status_code,
        headers=exc.headers,
    )
