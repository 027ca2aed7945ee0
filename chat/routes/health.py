from __future__ import annotations

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse


async def healthz(request: Request) -> JSONResponse:
    """200 once the database and the broker both answer; 503 naming the one that does not."""
    checks = {}
    try:
        async with request.app.state.db() as db:
            await db.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure to answer means "not healthy", whatever its type
        checks["database"] = type(exc).__name__
    try:
        await request.app.state.broker.ping()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = type(exc).__name__
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", **checks},
        status_code=200 if healthy else 503,
    )
