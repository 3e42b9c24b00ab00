"""The system of record: SQLAlchemy typed models, one module per concept, all on one ``Base``
(whose metadata the migrations compare against)."""
from orchestrator.store.models.access import ApiToken, ConsoleSession, SpentLink, Variable
from orchestrator.store.models.audit import AuditChain, AuditCheckpoint, AuditEvent, AuditPurge, AuditVerification
from orchestrator.store.models.base import Base, Id, Json, Timestamp, UtcDateTime
from orchestrator.store.models.definitions import (
    DependencyLock,
    FlowRecord,
    FlowVersion,
    ScriptRecord,
    ScriptVersion,
    TranspiledCode,
)
from orchestrator.store.models.events import EventTriggerRecord, TriggerFire
from orchestrator.store.models.observe import BenchMark, BenchRun, MetricFold, MetricTotal
from orchestrator.store.models.runs import (
    Chord,
    ChordPart,
    JoinedKey,
    OwedSend,
    PurgedRun,
    Run,
    StepCacheEntry,
    StepRun,
)
from orchestrator.store.models.triggers import FlowTriggerRecord, Schedule, ScheduleFire, Webhook

__all__ = [
    "ApiToken",
    "AuditChain",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditPurge",
    "AuditVerification",
    "Base",
    "BenchMark",
    "BenchRun",
    "Chord",
    "ChordPart",
    "ConsoleSession",
    "DependencyLock",
    "EventTriggerRecord",
    "FlowRecord",
    "FlowTriggerRecord",
    "FlowVersion",
    "Id",
    "JoinedKey",
    "Json",
    "MetricFold",
    "MetricTotal",
    "OwedSend",
    "PurgedRun",
    "Run",
    "Schedule",
    "ScheduleFire",
    "ScriptRecord",
    "ScriptVersion",
    "SpentLink",
    "StepCacheEntry",
    "StepRun",
    "Timestamp",
    "TranspiledCode",
    "TriggerFire",
    "UtcDateTime",
    "Variable",
    "Webhook",
]
