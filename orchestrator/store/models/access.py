"""Who may do what, and what steps may read: API tokens, variables and secrets, console sessions."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    ForeignKey,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.store.models.base import Base, Id, Json, Timestamp


class ApiToken(Base):
    """A bearer token of the API; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # fnmatch patterns of the secrets the flows it saves may read (["*"]: any)
    secrets: Mapped[list[str]] = mapped_column(Json, default=lambda: ["*"], server_default=text("'[\"*\"]'"))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class Variable(Base):
    """A named value flows read as ``vars.<name>``, or, encrypted, as ``secrets.<name>``."""

    __tablename__ = "variables"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    secret: Mapped[bool] = mapped_column(default=False)
    value: Mapped[Any] = mapped_column(Json, nullable=True)  # plain variables only
    ciphertext: Mapped[str | None] = mapped_column(Text)  # secrets only: Fernet token of the JSON value
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class ConsoleSession(Base):
    """A signed-in console: the cookie holds a random id, this row its SHA-256, the token
    it was opened with (never the token itself) and the form secret its pages carry."""

    __tablename__ = "console_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(Id, ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class SpentLink(Base):
    """A resume or cancel link of an approval that was followed: a link decides once. Only
    the SHA-256 of its signature is kept (the link itself is made again from its claims)."""

    __tablename__ = "approval_links"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempt_id: Mapped[int] = mapped_column(Id, ForeignKey("step_runs.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # resume | cancel
    approver: Mapped[str] = mapped_column(String(220))  # role:<name> | token:<id>
    used_at: Mapped[dt.datetime] = mapped_column(Timestamp)
