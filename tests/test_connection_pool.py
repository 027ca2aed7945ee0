"""PostgreSQL's pool: connections that rested are pinged before use, busy ones are not."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from chat import db


async def _backend_pid(engine) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(text("SELECT pg_backend_pid()"))


async def test_a_connection_that_rested_and_died_is_replaced_before_a_request_gets_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_SECONDS", 0.0)
    engine = db.create_engine(postgres_url)
    try:
        first = await _backend_pid(engine)
        killer = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await killer.close()
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_connections_in_steady_use_are_not_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_engine(postgres_url)
    dialect = engine.sync_engine.dialect
    pings = []
    ping = dialect.do_ping
    monkeypatch.setattr(dialect, "do_ping", lambda connection: pings.append(1) or ping(connection))
    try:
        for _ in range(10):
            await _backend_pid(engine)
        assert pings == []
        monkeypatch.setattr(db, "PING_AFTER_SECONDS", 0.0)
        await _backend_pid(engine)
        assert pings == [1]
    finally:
        await engine.dispose()
