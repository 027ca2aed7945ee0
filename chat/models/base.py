"""The declarative base, the column types and conventions every table shares."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    MetaData,
    bindparam,
)
from sqlalchemy.orm import (
    DeclarativeBase,
)
from sqlalchemy.types import TypeDecorator

# The largest id or seq the columns hold on every backend (PostgreSQL's INTEGER;
# SQLite's are 64-bit, but no id gets past this): larger ones cannot exist, and
# asking PostgreSQL about one is an error, not an empty answer.
MAX_ID = 2**31 - 1

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Bound parameters that the prebuilt statements of several modules share.
ROOM = bindparam("room")
VIEWER = bindparam("viewer")
AUTHOR = bindparam("author")
