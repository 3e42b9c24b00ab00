"""Typed settings read from the environment (``MILLRACE_*``) once, at the edge."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


def _env_int(environ: dict[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


def _env_float(environ: dict[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if not value >= 0:
        raise SystemExit(f"{name} must be a number of seconds >= 0, got {raw!r}")
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)?")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _env_keep(environ: dict[str, str], name: str) -> float | None:
    """A retention: ``30d``, ``12h``, ``90m``, ``3600s`` or seconds; unset, empty or ``forever``: None."""
    raw = (environ.get(name) or "").strip().lower()
    if raw in ("", "forever"):
        return None
    match = _DURATION.fullmatch(raw)
    if match is None or float(match.group(1)) <= 0:
        raise SystemExit(f"{name} must be a duration like 30d, 12h or 3600s (or 'forever'), got {environ.get(name)!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _env_choice(environ: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (environ.get(name) or default).strip().lower()
    if raw not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, got {environ.get(name)!r}")
    return raw


def _env_prefix(environ: dict[str, str], name: str) -> str:
    raw = environ.get(name, "")
    # It begins exchange and queue names: RabbitMQ refuses to declare names in `amq.`.
    if not re.fullmatch(r"[A-Za-z0-9._-]*", raw) or raw.startswith("amq."):
        raise SystemExit(f"{name} may hold letters, digits, '.', '_' and '-' and not begin with 'amq.', "
                         f"got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything Millrace reads from its environment.

    With neither ``MILLRACE_BROKER_URL`` nor ``MILLRACE_DATABASE_URL`` set, Millrace
    runs in local mode: a SQLite file and a file-system broker under ``home``.
    """

    home: Path
    broker_url: str
    database_url: str
    local: bool
    secret_keys: tuple[str, ...]  # Fernet keys; the first encrypts, all decrypt (rotation)
    # Who migrations connect as (the schema's owner); empty: the runtime database_url.
    database_owner_url: str = ""
    # Whether MILLRACE_DATABASE_URL was set (else database_url is local mode's SQLite file).
    database_named: bool = False
    api_port: int = 8080
    # Where the browser loads Swagger UI from for /api/v1/docs; empty: the copy the app serves
    # itself (packaged, no network needed). A URL: a CDN or a mirror of swagger-ui-dist.
    docs_assets: str = ""
    # proxies in front of the API whose X-Forwarded-Proto/-Host to believe (0: none): behind a
    # TLS-terminating proxy, 1 makes the console's cookie Secure and links https
    proxy_hops: int = 0
    # Begins every name shared broker-wide (the default queue, Celery's control and event
    # exchanges): installations with different prefixes share a broker without hearing each
    # other's commands and events. Empty: Celery's own names, as before it existed.
    queue_prefix: str = ""
    default_queue: str = "millrace"  # the whole name, prefix included
    # x-max-priority of the classic queues Millrace declares: runs' `priority` 0-9 orders what
    # waits in them. 0: declared without (as before 0024; priorities then have no effect).
    queue_max_priority: int = 9
    # The type of the queues Millrace declares: "classic" (priorities) or "quorum" (replicated,
    # no priorities: queue_max_priority is then 0; countdowns go through RabbitMQ's delay queues).
    queue_type: str = "classic"
    log_limit: int = 65536
    result_limit: int = 1 << 20
    # RabbitMQ closes a consumer holding an unacked message for 30 min by default:
    # a task must end well before that or its message is redelivered mid-run.
    task_time_limit: int = 25 * 60
    # Consecutive code steps share one task; one that has run this long hands the rest on.
    # Must stay well under a minute: a step started before then may run to the time limit.
    batch_seconds: float = 5.0
    sweep_interval: float = 5.0
    # Deliveries of one step attempt that may end with no outcome (its worker died) before
    # the next one fails it: a step that kills its worker is not redelivered forever.
    max_deliveries: int = 3
    # The most iterations a `loop:` step may declare (`max_iterations`); more is refused at save.
    max_loop_iterations: int = 1000
    # sql steps without `database:` may use Millrace's own database only when this is on.
    sql_own_database: bool = False
    sql_row_limit: int = 1000
    # Where Python steps' packages come from (uv's --index-url / --extra-index-url).
    pip_index_url: str = ""
    pip_extra_index_urls: tuple[str, ...] = ()
    npm_registry: str = ""  # JavaScript steps' packages (npm's --registry); empty: npm's default
    # Task events (received, started, succeeded...) and sent events, for Flower.
    task_events: bool = True
    flower_address: str = "127.0.0.1"
    flower_port: int = 5555
    flower_basic_auth: str = ""  # "user:password[,user2:password2]"
    # The step sandbox (orchestrator/executors/sandbox.py): "on" (a production worker refuses
    # to start without it) or "off" (steps run unconfined, with a warning at every start).
    sandbox: str = "on"
    step_user: str = "millrace-step"  # the unprivileged user steps run as; created when missing
    sandbox_hide: tuple[Path, ...] = ()  # more paths steps must not see (MILLRACE_HOME always)
    step_network: str = "host"  # a step's network unless it or its flow says: "host" or "none"
    # What a step may use by default, and at most (a flow asking more is refused at save).
    step_memory_mb: int = 1024
    step_processes: int = 256
    step_cpu_s: int = 0  # 0: no CPU-time limit beside the wall-clock timeout
    step_disk_mb: int = 1024
    step_memory_mb_max: int = 8192
    step_processes_max: int = 4096
    step_cpu_s_max: int = 0  # 0: any
    step_disk_mb_max: int = 10240
    # Event triggers: a message body larger than this is a refused fire, not a run.
    trigger_body_limit: int = 1 << 20
    # A message with no id of its own (AMQP without message_id, MQTT without a message_id user
    # property) is known by a hash of its topic and body: the same one within this many seconds
    # is the same message (a redelivery), not a new one.
    trigger_dedupe_window: float = 3600.0
    # How often the listener reads the triggers table for flows saved, changed or deleted.
    listener_poll: float = 2.0
    # The base URL people reach the API at (https://millrace.example.com): approval links
    # begin with it. Empty: the URL of the request that asked for the links.
    public_url: str = ""
    # How long an approval's resume and cancel links work after the step began waiting
    # (never past the approval's own timeout).
    approval_link_ttl: float = 7 * 86400.0
    # How long finished runs are kept (None: forever); a flow's `retention: {keep: ...}` overrides it.
    retention: float | None = None
    retention_interval: float = 300.0  # how often the scheduler's leader looks for runs to purge
    retention_batch: int = 500  # top-level runs (with their subflow runs) purged per transaction
    # An idempotency key finds its run for at least this long: no run younger is ever purged.
    idempotency_window: float = 86400.0
    # The audit trail's checkpoints: the scheduler's leader seals the chains every this many
    # seconds (the window in which a rewritten chain goes unseen), signing with the Ed25519
    # private key (base64; set it on the scheduler only: the database never holds it). Empty:
    # no checkpoints. `millrace audit verify` checks signatures with the public key, and every
    # checkpoint the file (outside the database; empty: none) holds is still in the database.
    audit_checkpoint_interval: float = 5.0
    audit_key: str = ""
    audit_public_key: str = ""
    audit_checkpoint_file: str = ""
    # How long audit events are kept (None: forever), as whole checkpoints sealed that long ago;
    # the scheduler's leader purges them only with the owner's URL and the audit key.
    audit_retention: float | None = None

    @property
    def broker_folder(self) -> Path:
        return self.home / "broker"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment)."""
    env = dict(os.environ if environ is None else environ)
    # one place whatever the working directory: ~/.millrace (local mode's files, environments)
    home = Path(env.get("MILLRACE_HOME") or Path(env.get("HOME") or Path.home()) / ".millrace").resolve()
    broker_url = env.get("MILLRACE_BROKER_URL", "")
    database_url = env.get("MILLRACE_DATABASE_URL", "")
    local = not broker_url and not database_url
    if not broker_url:
        broker_url = "filesystem://localhost/"
    if not database_url:
        database_url = f"sqlite:///{home / 'millrace.db'}"
    prefix = _env_prefix(env, "MILLRACE_QUEUE_PREFIX")
    queue_type = _env_choice(env, "MILLRACE_QUEUE_TYPE", ("classic", "quorum"), Settings.queue_type)
    return Settings(
        home=home,
        broker_url=broker_url,
        database_url=database_url,
        local=local,
        database_owner_url=env.get("MILLRACE_DATABASE_OWNER_URL", ""),
        database_named=bool(env.get("MILLRACE_DATABASE_URL")),
        secret_keys=tuple(k.strip() for k in env.get("MILLRACE_SECRET_KEY", "").split(",") if k.strip()),
        api_port=_env_int(env, "MILLRACE_API_PORT", 8080),
        docs_assets=env.get("MILLRACE_DOCS_ASSETS", Settings.docs_assets).rstrip("/"),
        proxy_hops=_env_int(env, "MILLRACE_PROXY_HOPS", 0),
        queue_prefix=prefix,
        default_queue=prefix + env.get("MILLRACE_DEFAULT_QUEUE", "millrace"),
        queue_type=queue_type,
        # RabbitMQ 3.10's quorum queues refuse x-max-priority: priorities are then ignored.
        queue_max_priority=0 if queue_type == "quorum" else
        min(max(_env_int(env, "MILLRACE_QUEUE_MAX_PRIORITY", 9), 0), 9),
        log_limit=_env_int(env, "MILLRACE_LOG_LIMIT", 65536),
        result_limit=_env_int(env, "MILLRACE_RESULT_LIMIT", 1 << 20),
        task_time_limit=_env_int(env, "MILLRACE_TASK_TIME_LIMIT", 25 * 60),
        max_deliveries=max(_env_int(env, "MILLRACE_MAX_DELIVERIES", 3), 1),
        max_loop_iterations=max(_env_int(env, "MILLRACE_MAX_LOOP_ITERATIONS", 1000), 1),
        batch_seconds=min(_env_float(env, "MILLRACE_STEP_BATCH_S", 5.0), 50.0),
        sql_own_database=env.get("MILLRACE_SQL_OWN_DATABASE", "0").lower() in ("1", "true", "yes", "on"),
        sql_row_limit=_env_int(env, "MILLRACE_SQL_ROW_LIMIT", 1000),
        pip_index_url=env.get("MILLRACE_PIP_INDEX_URL", ""),
        npm_registry=env.get("MILLRACE_NPM_REGISTRY", ""),
        pip_extra_index_urls=tuple(u.strip() for u in env.get("MILLRACE_PIP_EXTRA_INDEX_URLS", "").split(",")
                                   if u.strip()),
        task_events=env.get("MILLRACE_TASK_EVENTS", "1").lower() not in ("0", "false", "no", "off"),
        flower_address=env.get("MILLRACE_FLOWER_ADDRESS", "127.0.0.1"),
        flower_port=_env_int(env, "MILLRACE_FLOWER_PORT", 5555),
        flower_basic_auth=env.get("MILLRACE_FLOWER_BASIC_AUTH", ""),
        sandbox=_env_choice(env, "MILLRACE_SANDBOX", ("on", "off"), "on"),
        step_user=env.get("MILLRACE_STEP_USER", "millrace-step"),
        sandbox_hide=tuple(Path(p.strip()) for p in env.get("MILLRACE_SANDBOX_HIDE", "").split(",") if p.strip()),
        step_network=_env_choice(env, "MILLRACE_STEP_NETWORK", ("host", "none"), "host"),
        step_memory_mb=_env_int(env, "MILLRACE_STEP_MEMORY_MB", 1024),
        step_processes=_env_int(env, "MILLRACE_STEP_PROCESSES", 256),
        step_cpu_s=_env_int(env, "MILLRACE_STEP_CPU_S", 0),
        step_disk_mb=_env_int(env, "MILLRACE_STEP_DISK_MB", 1024),
        step_memory_mb_max=_env_int(env, "MILLRACE_STEP_MEMORY_MB_MAX", 8192),
        step_processes_max=_env_int(env, "MILLRACE_STEP_PROCESSES_MAX", 4096),
        step_cpu_s_max=_env_int(env, "MILLRACE_STEP_CPU_S_MAX", 0),
        step_disk_mb_max=_env_int(env, "MILLRACE_STEP_DISK_MB_MAX", 10240),
        trigger_body_limit=_env_int(env, "MILLRACE_TRIGGER_BODY_LIMIT", 1 << 20),
        trigger_dedupe_window=_env_float(env, "MILLRACE_TRIGGER_DEDUPE_WINDOW_S", 3600.0),
        listener_poll=max(_env_float(env, "MILLRACE_LISTENER_POLL_S", 2.0), 0.1),
        public_url=env.get("MILLRACE_PUBLIC_URL", "").rstrip("/"),
        approval_link_ttl=max(_env_float(env, "MILLRACE_APPROVAL_LINK_TTL_S", 7 * 86400.0), 1.0),
        retention=_env_keep(env, "MILLRACE_RETENTION"),
        retention_interval=max(_env_float(env, "MILLRACE_RETENTION_INTERVAL_S", 300.0), 1.0),
        retention_batch=max(_env_int(env, "MILLRACE_RETENTION_BATCH", 500), 1),
        idempotency_window=_env_float(env, "MILLRACE_IDEMPOTENCY_WINDOW_S", 86400.0),
        audit_checkpoint_interval=max(_env_float(env, "MILLRACE_AUDIT_CHECKPOINT_S", 5.0), 0.1),
        audit_key=env.get("MILLRACE_AUDIT_KEY", "").strip(),
        audit_public_key=env.get("MILLRACE_AUDIT_PUBLIC_KEY", "").strip(),
        audit_checkpoint_file=env.get("MILLRACE_AUDIT_CHECKPOINT_FILE", "").strip(),
        audit_retention=_env_keep(env, "MILLRACE_AUDIT_RETENTION"),
    )
