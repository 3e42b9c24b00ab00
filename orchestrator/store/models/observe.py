"""What watching the system keeps: benchmark runs and marks, folded metric totals."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.store.models.base import Base, Id, Json, Timestamp


class BenchMark(Base):
    """When a raw-Celery baseline chain of ``millrace bench`` finished."""

    __tablename__ = "bench_marks"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    finished_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class BenchRun(Base):
    """One `millrace bench` invocation: its figures, where and on which revision."""

    __tablename__ = "bench_runs"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    git_revision: Mapped[str | None] = mapped_column(String(40))
    machine: Mapped[dict[str, Any]] = mapped_column(Json)
    args: Mapped[dict[str, Any]] = mapped_column(Json)
    summary: Mapped[dict[str, Any]] = mapped_column(Json)


class MetricTotal(Base):
    """A kept counter or histogram bucket: what every fold since the start added up."""

    __tablename__ = "metric_totals"
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    labels: Mapped[str] = mapped_column(String(1000), primary_key=True)  # canonical JSON object
    value: Mapped[float] = mapped_column()


class MetricFold(Base):
    """How far a source's rows have been folded into the totals."""

    __tablename__ = "metric_folds"
    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    folded_until: Mapped[dt.datetime] = mapped_column(Timestamp)
