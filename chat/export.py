"""`chat export` and `chat import`: the instance (or one room) as NDJSON, one row a line.

The first line says what the file is; then each table's rows in primary-key order, the
tables in an order that satisfies every foreign key:

    {"type":"chat-export","format":1,"scope":"instance"}
    {"type":"users","id":1,"username":"alice",...}
    {"type":"rooms","id":1,"name":"general",...}

Rows are streamed from a server-side cursor and written as they come, so memory stays
flat however many messages there are. Datetimes are ISO 8601 in UTC; everything else is
the column's own JSON value. An import reads the lines in order into an empty database,
in one transaction (a bad line changes nothing), so that export → import → export gives
the same bytes. Sessions, password-reset links and pending webhook deliveries are not
exported: they are short-lived. A room's export (`--room`) names its people by id and
username only: no password hashes, so it is for reading and keeping, and imports as
accounts that cannot sign in until an administrator resets their passwords.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Table, func, select, union
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from chat.models import (
    AdminEvent,
    ApiToken,
    Attachment,
    Base,
    Bot,
    IncomingWebhook,
    InstanceSetting,
    Invite,
    Membership,
    Mention,
    Message,
    Reaction,
    Room,
    User,
)

FORMAT = 1
# Every exported table, parents before children.
TABLES: tuple[Table, ...] = tuple(
    model.__table__  # type: ignore[misc]
    for model in (
        InstanceSetting,
        User,
        Bot,
        Room,
        Membership,
        Message,
        Attachment,
        Reaction,
        Mention,
        Invite,
        AdminEvent,
        ApiToken,
        IncomingWebhook,
    )
)
BY_NAME = {table.name: table for table in TABLES}
# What a room's export tells of a person.
ROOM_USER_COLUMNS = ("id", "username", "created_at", "is_bot")
BATCH = 500


class NotAnExport(ValueError):
    """Why a file cannot be imported (with its line number)."""


def _line(table: str, row: dict[str, Any]) -> str:
    values = {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row.items()
    }
    return json.dumps({"type": table, **values}, ensure_ascii=False, separators=(",", ":"))


def _room_queries(room_id: int) -> list[tuple[str, Select]]:
    """Each table's rows that belong to the room, in export order."""
    messages = select(Message.id).where(Message.room_id == room_id)
    # Everyone the room's rows name, members or not (any more): importable on its own.
    people = union(
        select(Membership.user_id).where(Membership.room_id == room_id),
        select(Message.author_id).where(Message.room_id == room_id),
        select(Room.created_by_id).where(Room.id == room_id),
        select(Reaction.user_id).where(Reaction.message_id.in_(messages)),
        select(Mention.user_id).where(Mention.message_id.in_(messages)),
    )
    users = User.__table__
    return [
        (
            "users",
            select(*(users.c[name] for name in ROOM_USER_COLUMNS))
            .where(users.c.id.in_(people))
            .order_by(users.c.id),
        ),
        ("rooms", select(Room.__table__).where(Room.id == room_id)),
        (
            "memberships",
            select(Membership.__table__)
            .where(Membership.room_id == room_id)
            .order_by(Membership.user_id),
        ),
        (
            "messages",
            select(Message.__table__).where(Message.room_id == room_id).order_by(Message.id),
        ),
        (
            "attachments",
            select(Attachment.__table__)
            .where(Attachment.message_id.in_(messages))
            .order_by(Attachment.id),
        ),
        (
            "reactions",
            select(Reaction.__table__)
            .where(Reaction.message_id.in_(messages))
            .order_by(Reaction.message_id, Reaction.user_id, Reaction.emoji),
        ),
        (
            "mentions",
            select(Mention.__table__)
            .where(Mention.message_id.in_(messages))
            .order_by(Mention.message_id, Mention.user_id),
        ),
    ]


def _instance_queries() -> list[tuple[str, Select]]:
    return [(table.name, select(table).order_by(*table.primary_key.columns)) for table in TABLES]


async def export_lines(
    connection: AsyncConnection, room_id: int | None = None
) -> AsyncIterator[str]:
    """The export, a line at a time (without newlines), read as it is written."""
    scope = "instance" if room_id is None else "room"
    yield json.dumps(
        {"type": "chat-export", "format": FORMAT, "scope": scope}, separators=(",", ":")
    )
    queries = _instance_queries() if room_id is None else _room_queries(room_id)
    for table, query in queries:
        result = await connection.stream(query.execution_options(yield_per=BATCH))
        async for row in result.mappings():
            yield _line(table, dict(row))


async def count_rows(connection: AsyncConnection, room_id: int | None = None) -> int:
    """How many rows the export will have (for its progress bar)."""
    queries = _instance_queries() if room_id is None else _room_queries(room_id)
    total = 0
    for _, query in queries:
        total += await connection.scalar(
            select(func.count()).select_from(query.order_by(None).subquery())
        )
    return total


async def is_empty(connection: AsyncConnection) -> bool:
    for table in (User.__table__, Room.__table__):
        if await connection.scalar(select(func.count()).select_from(table)):
            return False
    return True


def _parser(table: Table) -> Callable[[dict[str, Any]], dict[str, Any]]:
    dates = {
        column.name
        for column in table.columns
        if isinstance(column.type, DateTime)
        or isinstance(getattr(column.type, "impl", None), DateTime)
    }
    known = {column.name for column in table.columns}

    def parse(row: dict[str, Any]) -> dict[str, Any]:
        unknown = set(row) - known
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        return {
            key: datetime.fromisoformat(value) if key in dates and value is not None else value
            for key, value in row.items()
        }

    return parse


async def import_lines(
    connection: AsyncConnection, lines: Iterable[str], progress: Callable[[int], None]
) -> int:
    """Insert an export's rows (into an empty database, in the caller's transaction);
    the number of rows. Raises NotAnExport for a line that is not an export's."""
    parsers = {name: _parser(table) for name, table in BY_NAME.items()}
    batch: list[dict[str, Any]] = []
    batch_table: str | None = None
    count = 0

    async def flush() -> None:
        if batch:
            await connection.execute(BY_NAME[batch_table].insert(), batch)  # type: ignore[index]
            batch.clear()

    for number, raw in enumerate(lines, start=1):
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            kind = record.pop("type", None)
            if number == 1:
                if kind != "chat-export" or record.get("format") != FORMAT:
                    raise ValueError(f"not a chat export of format {FORMAT}")
                continue
            if kind not in parsers:
                raise ValueError(f"unknown type {kind!r}")
            if kind == "users":
                record.setdefault("password_hash", "")  # a room's export: cannot sign in
            row = parsers[kind](record)
        except (ValueError, TypeError) as exc:
            raise NotAnExport(f"line {number}: {exc}") from exc
        if kind != batch_table or len(batch) >= BATCH:
            await flush()
            batch_table = kind
        batch.append(row)
        count += 1
        if count % 10_000 == 0:
            progress(count)
    await flush()
    if connection.dialect.name == "postgresql":
        await _restart_sequences(connection)
    return count


async def _restart_sequences(connection: AsyncConnection) -> None:
    """Imported rows carry their ids: each id sequence continues after the largest."""
    for table in Base.metadata.sorted_tables:
        id_column = table.c.get("id")
        if id_column is None or not id_column.primary_key or id_column.autoincrement is False:
            continue
        largest = func.max(id_column)
        await connection.execute(
            select(
                func.setval(
                    func.pg_get_serial_sequence(table.name, "id"),
                    func.coalesce(largest, 1),
                    largest.is_not(None),
                )
            )
        )
