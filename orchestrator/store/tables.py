"""Every table of the system of record by the name its statements use, declared once."""
from __future__ import annotations

from orchestrator.store.models import (
    ApiToken,
    AuditChain,
    AuditCheckpoint,
    AuditEvent,
    AuditPurge,
    AuditVerification,
    BenchMark,
    BenchRun,
    Chord,
    ChordPart,
    ConsoleSession,
    DependencyLock,
    EventTriggerRecord,
    FlowRecord,
    FlowTriggerRecord,
    FlowVersion,
    JoinedKey,
    MetricFold,
    MetricTotal,
    OwedSend,
    PurgedRun,
    Run,
    Schedule,
    ScheduleFire,
    ScriptRecord,
    ScriptVersion,
    SpentLink,
    StepCacheEntry,
    StepRun,
    TranspiledCode,
    TriggerFire,
    Variable,
    Webhook,
)

runs = Run.__table__
step_runs = StepRun.__table__
audit_events = AuditEvent.__table__
flows = FlowRecord.__table__
flow_versions = FlowVersion.__table__
scripts = ScriptRecord.__table__
script_versions = ScriptVersion.__table__
step_cache = StepCacheEntry.__table__
schedules = Schedule.__table__
schedule_fires = ScheduleFire.__table__
flow_triggers = FlowTriggerRecord.__table__
dependency_locks = DependencyLock.__table__
transpiled_code = TranspiledCode.__table__
api_tokens = ApiToken.__table__
webhooks = Webhook.__table__
variables = Variable.__table__
chords = Chord.__table__
chord_parts = ChordPart.__table__
bench_marks = BenchMark.__table__
bench_runs = BenchRun.__table__
metric_totals = MetricTotal.__table__
console_sessions = ConsoleSession.__table__
audit_verifications = AuditVerification.__table__
audit_chains = AuditChain.__table__
audit_checkpoints = AuditCheckpoint.__table__
audit_purges = AuditPurge.__table__
metric_folds = MetricFold.__table__
outbox = OwedSend.__table__
event_triggers = EventTriggerRecord.__table__
trigger_fires = TriggerFire.__table__
approval_links = SpentLink.__table__
purged_runs = PurgedRun.__table__
joined_keys = JoinedKey.__table__
