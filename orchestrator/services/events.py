"""What one message of an event trigger becomes: exactly one run, or one refused fire.

The listener hands each message it receives to :func:`fire` and acknowledges it only once
``fire`` has returned, that is once the fire (and its run, with its first message owed)
is committed. A message is known by its key: the broker's own id that survives
redelivery (AMQP ``message_id``, the JetStream stream sequence, the Redis entry id, the
outbox row's id, MQTT's ``message_id`` user property), or for a message without one a
hash of its topic and body within ``Policy.dedupe_window``. A key already recorded is a
redelivery: nothing new starts, and the message is acknowledged again.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from orchestrator.definitions.expressions import compile_value
from orchestrator.definitions.inputs import validate_inputs
from orchestrator.definitions.parser import check_storable
from orchestrator.errors import Conflict, FlowError, NotFound, ValidationError
from orchestrator.services.publisher import Publisher
from orchestrator.services.runs import new_run
from orchestrator.services.scripts import pin_scripts
from orchestrator.store import event_triggers as rows
from orchestrator.store.admission import insert_run
from orchestrator.store.event_triggers import EventTriggerRow
from orchestrator.store.outbox import Owed
from orchestrator.store.sql import now

MAX_KEY = 150  # longer broker ids are kept as their hash (the run's idempotency key has 200)


@dataclass(frozen=True)
class Message:
    """A message as any broker gives it: its bytes, headers, where it came from, and its key
    (None: it has none that survives redelivery; its content's hash stands in)."""

    body: bytes
    headers: dict[str, Any]
    topic: str
    key: str | None


@dataclass(frozen=True)
class Policy:
    """What an installation allows of a message (``MILLRACE_TRIGGER_*``)."""

    body_limit: int = 1 << 20
    dedupe_window: float = 3600.0


@dataclass(frozen=True)
class Fired:
    """What became of a message: ``started`` (its run), ``refused`` (why), or ``redelivered``
    (it was recorded before: nothing new)."""

    status: str
    run_id: str | None = None
    reason: str | None = None
    owed: Owed | None = None


class Refused(Exception):
    """A message that cannot start a run, and why."""


def fire(publisher: Publisher, trigger: EventTriggerRow, message: Message, policy: Policy,
         actor: str = "listener") -> Fired:
    """Record the message's fire (and its run) once, then send the run; safe to call again
    with the same message."""
    engine = publisher.engine
    key, digest = _key_of(message)
    topic = _storable_text(message.topic)
    try:
        with engine.begin() as conn:
            since = now() - dt.timedelta(seconds=policy.dedupe_window)
            earlier = (rows.fire_by_key(conn, trigger.id, key) if digest is None
                       else rows.fire_by_digest(conn, trigger.id, digest, since))
            if earlier is not None:
                return Fired("redelivered", earlier.run_id, earlier.reason)
            try:
                run_id, owed = _start(conn, publisher, trigger, message, key, policy, actor)
            except Refused as exc:
                rows.record_fire(conn, trigger.id, key, status="refused", reason=_storable_text(str(exc)), topic=topic,
                                 digest=digest)
                return Fired("refused", reason=str(exc))
            rows.record_fire(conn, trigger.id, key, status="started", run_id=run_id, topic=topic,
                             digest=digest)
    except IntegrityError:  # another listener recorded it first (two believed they led)
        with engine.connect() as conn:
            earlier = rows.fire_by_key(conn, trigger.id, key)
        if earlier is None:
            raise
        return Fired("redelivered", earlier.run_id, earlier.reason)
    publisher.deliver(owed)
    return Fired("started", run_id, owed=owed)


def _key_of(message: Message) -> tuple[str, str | None]:
    """The fire's key, and for a message without an id the digest it is found again by."""
    if message.key is not None:
        key = message.key
        return (key if len(key) <= MAX_KEY else "sha256:" + hashlib.sha256(key.encode()).hexdigest()), None
    digest = hashlib.sha256(message.topic.encode() + b"\0" + message.body).hexdigest()
    return f"content:{digest[:32]}:{uuid.uuid4().hex}", digest


def _start(conn: Any, publisher: Publisher, trigger: EventTriggerRow, message: Message, key: str,
           policy: Policy, actor: str) -> tuple[str, Owed | None]:
    if len(message.body) > policy.body_limit:
        raise Refused(f"the body is {len(message.body)} bytes, over this installation's limit of "
                      f"{policy.body_limit} (MILLRACE_TRIGGER_BODY_LIMIT)")
    try:
        plan = publisher.plans.plan(trigger.flow_id, None)
        given = inputs_of(trigger.inputs, message)
        check_storable(given)
        inputs = validate_inputs(plan.flow.inputs, given)
        pins = pin_scripts(publisher.engine, plan.flow)
        run_id = str(uuid.uuid4())
        created = insert_run(conn, new_run(plan, run_id, inputs, trigger=trigger.kind, actor=actor, scripts=pins,
                                           idempotency_key=f"event:{trigger.trigger_id}:{key}"))
    except ValidationError as exc:
        raise Refused("; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems)) from None
    except (FlowError, Conflict, NotFound) as exc:
        raise Refused(f"the run could not start: {exc}") from None
    return created.run_id, created.owed  # within a debounce window: the pending run this message joined


def inputs_of(mapping: dict[str, Any] | None, message: Message) -> dict[str, Any]:
    """The run's inputs from a message: its body (a JSON object), or ``mapping`` evaluated
    over ``trigger.body`` (JSON, else text), ``trigger.headers`` and ``trigger.topic``."""
    body = _body_of(message.body)
    if mapping is None:
        if not isinstance(body, dict):
            raise Refused("the body is not a JSON object, so it cannot be the run's inputs; give the trigger "
                          "`inputs:` to map it (`${{ trigger.body }}`)")
        return body
    names = {"trigger": {"body": body, "headers": message.headers, "topic": message.topic}}
    try:
        return compile_value(mapping).render(names)
    except FlowError as exc:
        raise Refused(f"inputs: {exc}") from None


def _storable_text(text: str) -> str:
    return text.replace("\x00", "\\u0000")


def _body_of(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the body is not UTF-8 text") from None
    try:
        return json.loads(text)
    except ValueError:
        return text
