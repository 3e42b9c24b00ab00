"""Event trigger declarations of every kind, as a flow's author writes them in YAML."""
from __future__ import annotations

import pytest

from orchestrator.definitions.parser import load_document, parse_flow
from orchestrator.errors import ValidationError


def flow_with(trigger: str) -> str:
    return f"""
id: orders
inputs: {{n: {{type: integer}}}}
triggers:
  - {trigger}
steps:
  - id: a
    python: "def main(): return 1"
"""


def problems(trigger: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as refused:
        parse_flow(flow_with(trigger))
    return [(p.path, p.message) for p in refused.value.problems]


def test_yaml_keys_that_yaml_1_1_reads_as_booleans_stay_text():
    data = load_document("postgres: {table: orders, on: [insert]}\nflags:\n  off: 1\n  yes: no\n")
    assert data == {"postgres": {"table": "orders", "on": ["insert"]}, "flags": {"off": 1, "yes": False}}


def test_a_postgres_trigger_reads_on_as_the_changes_it_starts_runs_for():
    trigger = parse_flow(flow_with("postgres: {table: shop.orders, on: [insert, delete]}")).triggers[0]
    assert (trigger.id, trigger.kind) == ("postgres-1", "postgres")
    assert trigger.postgres.table == "shop.orders" and trigger.postgres.on == ["insert", "delete"]


def test_every_kind_parses_with_its_source():
    for text, kind in [("mqtt: {topic: 'sensors/+/reading', url: mqtt_url}", "mqtt"),
                       ("nats: {subject: 'orders.>', stream: ORDERS, url: nats_url}", "nats"),
                       ("redis: {stream: orders, url: redis_url}", "redis"),
                       ("postgres: {channel: orders_changed}", "postgres")]:
        trigger = parse_flow(flow_with(text)).triggers[0]
        assert (trigger.kind, trigger.id) == (kind, f"{kind}-1")


def test_a_broker_without_a_default_needs_its_url_secret():
    assert problems("mqtt: {topic: a/b}") == [("triggers[0].mqtt.url", "required field missing")]
    assert problems("redis: {stream: s}") == [("triggers[0].redis.url", "required field missing")]


def test_mistakes_are_named_by_their_path():
    assert problems("postgres: {table: orders, on: [upsert]}")[0][0] == "triggers[0].postgres.on[0]"
    assert problems("postgres: {table: orders, channel: c}") == [
        ("triggers[0].postgres", "give `table:` (with `on:`) or `channel:`, not both and not neither")]
    assert problems("postgres: {table: 'orders; drop table x', on: [insert]}")[0][0] == "triggers[0].postgres.table"
    assert problems("nats: {subject: a, stream: a.b, url: n}")[0][0] == "triggers[0].nats.stream"
    assert problems("kafka: {topic: a}")[0][1].startswith("a trigger has one of `cron:`")
