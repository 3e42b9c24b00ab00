"""What every table model shares: the declarative base and the column types of times, JSON and ids."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

Json = JSON().with_variant(JSONB(), "postgresql")
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator):
    """A time with its zone, read back aware on every database: PostgreSQL keeps the offset;
    SQLite (local mode) keeps none, so what it gives back is read as the UTC it was written in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is not None and dialect.name == "sqlite":
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


Timestamp = UtcDateTime()


class Base(DeclarativeBase):
    pass


def partial(predicate: str) -> dict[str, Any]:
    """An index's keyword arguments that make it partial, on both databases (SQLite has
    partial indexes too): only the rows ``predicate`` holds for are in it."""
    return {"postgresql_where": text(predicate), "sqlite_where": text(predicate)}
