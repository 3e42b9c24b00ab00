"""Flows and saved scripts with their immutable versions, kept dependency locks and transpiled code."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.store.models.base import Base, Json, Timestamp


class FlowRecord(Base):
    """A flow id and its newest version; versions live in FlowVersion."""

    __tablename__ = "flows"
    flow_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class FlowVersion(Base):
    """One immutable saved version of a flow document."""

    __tablename__ = "flow_versions"
    flow_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(Json)
    source: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class ScriptRecord(Base):
    """A saved script's path and its newest version; versions live in ScriptVersion."""

    __tablename__ = "scripts"
    path: Mapped[str] = mapped_column(String(200), primary_key=True)
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class ScriptVersion(Base):
    """One immutable saved version of a script, with the input schema read from its code."""

    __tablename__ = "script_versions"
    path: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    language: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(String(500))
    input_schema: Mapped[dict[str, Any]] = mapped_column(Json)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(200))


class DependencyLock(Base):
    """The exact versions a set of Python requirements resolved to, kept so that runs
    months apart install the same packages."""

    __tablename__ = "dependency_locks"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the sorted requirements
    requirements: Mapped[list[str]] = mapped_column(Json)
    lock: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class TranspiledCode(Base):
    """The JavaScript a TypeScript step's or script's code was turned into when it was
    saved, kept by the code's digest: workers run this, never the transpiler."""

    __tablename__ = "transpiled_code"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the TypeScript
    javascript: Mapped[str] = mapped_column(Text)
    transpiler: Mapped[str] = mapped_column(String(100))  # what made it, e.g. "esbuild 0.28.2"
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
