"""An example of every construct of the flow language, written into the JSON Schema
(``flow_schema``) so an editor shows one beside each step kind, step option, flow field and
trigger kind. Each is checked by the tests: inside a flow it passes the schema, the parser
and the save-time checks."""
from __future__ import annotations

from typing import Any

from orchestrator.definitions.flow import Flow

ADD = "def main(a, b):\n    return a + b\n"

# A whole step of each kind.
KIND_EXAMPLES: dict[str, dict[str, Any]] = {
    "python": {"id": "add", "python": ADD, "with": {"a": 1, "b": 2}},
    "bash": {"id": "greet", "bash": "echo \"hello $WHO\"", "with": {"WHO": "${{ inputs.who }}"}},
    "javascript": {"id": "upper", "javascript": "export function main(text) { return text.toUpperCase(); }",
                   "with": {"text": "${{ inputs.who }}"}},
    "typescript": {"id": "shout", "typescript": "export function main(text: string, times: number = 1): string {\n"
                                                "  return text.toUpperCase().repeat(times);\n}\n",
                   "with": {"text": "${{ inputs.who }}", "times": 2}},
    "sql": {"id": "count", "sql": "SELECT count(*) AS n FROM orders WHERE day = %(day)s", "database": "shop_db",
            "with": {"day": "${{ inputs.day }}"}},
    "script": {"id": "report", "script": "reports/daily@3", "with": {"day": "${{ inputs.day }}"}},
    "flow": {"id": "load", "flow": "etl/load", "with": {"day": "${{ inputs.day }}"}},
    "parallel": {"id": "both", "parallel": [{"id": "left", "steps": [{"id": "l", "bash": "echo left"}]},
                                            {"id": "right", "steps": [{"id": "r", "bash": "echo right"}]}]},
    "for_each": {"id": "each", "for_each": "${{ inputs.days }}", "parallel": 4,
                 "do": [{"id": "work", "bash": "echo $DAY", "with": {"DAY": "${{ item }}"}}]},
    "switch": {"id": "pick", "switch": [{"if": "${{ inputs.who == 'ops' }}", "do": [{"id": "page", "bash": "echo"}]}],
               "else": [{"id": "mail", "bash": "echo mail"}]},
    "loop": {"id": "poll", "loop": {"do": [{"id": "check", "python": "def main(n):\n    return {'done': n >= 3}\n",
                                            "with": {"n": "${{ iteration }}"}}],
                                     "until": "${{ steps.check.result.done }}", "max_iterations": 10, "delay": "5s"}},
    "approval": {"id": "sign_off", "approval": {
        "description": "Refund this order?", "timeout": "24h", "on_timeout": "reject", "self_approval": False,
        "form": {"amount": {"type": "integer", "required": True, "description": "cents"},
                 "reason": {"type": "enum", "enum": ["damaged", "late", "other"], "default": "other"}},
        "approvers": {"roles": ["admin"], "tokens": ["refunds-lead"]}}},
    "sleep": {"id": "pause", "sleep": "30s"},
}

# Each option a step may take, shown on a step that uses it.
OPTION_EXAMPLES: dict[str, dict[str, Any]] = {
    "id": {"id": "add", "python": ADD, "with": {"a": 1, "b": 2}},
    "summary": {"id": "add", "summary": "adds two numbers", "python": ADD, "with": {"a": 1, "b": 2}},
    "with": {"id": "add", "python": ADD, "with": {"a": "${{ inputs.a }}", "b": 2}},
    "if": {"id": "add", "python": ADD, "if": "${{ inputs.a > 0 }}", "with": {"a": 1, "b": 2}},
    "retry": {"id": "fetch", "bash": "curl -fsS https://example.com", "retry": {
        "attempts": 3, "delay": "2s", "backoff": "exponential", "max_delay": "1m",
        "if": "${{ 'timeout' in error.message or error.type == 'exit 28' }}"}},
    "timeout": {"id": "slow", "bash": "sleep 5", "timeout": "10s"},
    "queue": {"id": "gpu", "bash": "nvidia-smi", "queue": "gpu"},
    "cache": {"id": "add", "python": ADD, "with": {"a": 1, "b": 2}, "cache": "1h"},
    "continue_on_error": {"id": "optional", "bash": "exit 1", "continue_on_error": True},
    "limits": {"id": "big", "python": ADD, "with": {"a": 1, "b": 2}, "limits": {"memory": "512MiB", "cpu": "30s"}},
    "network": {"id": "offline", "python": ADD, "with": {"a": 1, "b": 2}, "network": "none"},
    "fail_if": {"id": "count", "python": "def main():\n    return 0\n", "fail_if": "${{ result == 0 }}"},
    "stop_if": {"id": "anything_new", "python": "def main():\n    return []\n", "stop_if": "${{ result == [] }}"},
    "labels": {"id": "load", "python": "def main():\n    return {'count': 120}\n",
               "labels": {"rows": "${{ result.count }}"}},
    "break_if": {"id": "scan", "for_each": [1, 2, 3], "parallel": False, "do": [
        {"id": "look", "python": "def main(n):\n    return n\n", "with": {"n": "${{ item }}"},
         "break_if": "${{ result >= 2 }}"}]},
}

# Each field of the flow document, with a value.
FLOW_EXAMPLES: dict[str, Any] = {
    "id": "billing/invoices",
    "summary": "send the day's invoices",
    "description": "Reads the orders of a day and mails one invoice per customer.",
    "inputs": {"day": {"type": "string", "format": "date"}, "dry_run": {"type": "boolean", "default": False}},
    "triggers": [{"cron": "0 6 * * *", "timezone": "Europe/Paris", "inputs": {"day": "2026-12-01"}}],
    "concurrency": {"limit": 1, "key": "${{ inputs.day }}", "on_limit": "queue", "debounce": "30s"},
    "labels": {"team": "billing", "tier": "gold"},
    "priority": 7,
    "network": "none",
    "limits": {"memory": "256MiB"},
    "retention": {"keep": "30d"},
    "steps": [{"id": "add", "python": ADD, "with": {"a": 1, "b": 2}}],
    "on_failure": [{"id": "tell", "bash": "echo \"$ERR\"", "with": {"ERR": "${{ run.error }}"}}],
    "finally": [{"id": "clean_up", "bash": "echo \"run $STATUS\"", "with": {"STATUS": "${{ run.status }}"}}],
}

# A trigger of each kind.
TRIGGER_EXAMPLES: dict[str, dict[str, Any]] = {
    "cron": {"id": "nightly", "cron": "0 3 * * *", "timezone": "UTC", "catchup": "last"},
    "flow": {"id": "after_load", "flow": "etl/load", "status": ["succeeded"],
             "inputs": {"day": "${{ trigger.result.day }}"}},
    "amqp": {"id": "orders", "amqp": {"queue": "orders_placed"}, "inputs": {"day": "${{ trigger.body.day }}"}},
    "mqtt": {"id": "readings", "mqtt": {"topic": "sensors/+/reading", "url": "plant_mqtt"},
             "inputs": {"who": "${{ trigger.topic }}"}},
    "nats": {"id": "shipped", "nats": {"subject": "orders.shipped", "stream": "ORDERS", "url": "shop_nats"}},
    "redis": {"id": "signups", "redis": {"stream": "signups", "url": "cache_redis"},
              "inputs": {"who": "${{ trigger.body.email }}"}},
    "postgres": {"id": "new_orders", "postgres": {"table": "shop.orders", "on": ["insert"]},
                 "inputs": {"day": "${{ trigger.body.day }}"}},
}


def example_flows() -> dict[str, dict[str, Any]]:
    """Each example inside a whole flow document, by what it shows."""
    base = {"id": "examples/flow", "inputs": {"who": {"type": "string", "default": "ops"},
                                               "a": {"type": "integer", "default": 1},
                                               "day": {"type": "string", "default": "2026-12-01"},
                                               "days": {"type": "array", "items": {"type": "string"}, "default": []}}}
    found = {f"kind {k}": {**base, "steps": [step]} for k, step in KIND_EXAMPLES.items()}
    found |= {f"option {k}": {**base, "steps": [step]} for k, step in OPTION_EXAMPLES.items()}
    found |= {f"trigger {k}": {**base, "triggers": [t], "steps": [KIND_EXAMPLES["python"]]}
              for k, t in TRIGGER_EXAMPLES.items()}
    found["flow"] = dict(FLOW_EXAMPLES)
    return found


def flow_schema(**options: Any) -> dict[str, Any]:
    """The flow document's JSON Schema (``Flow.model_json_schema`` with ``options``) with an
    example on every step kind, step option, flow field and trigger kind."""
    from orchestrator.definitions.steps import KINDS

    schema = Flow.model_json_schema(by_alias=True, **options)
    defs = schema.get("$defs", {})
    titles = {cls.__name__: kind for kind, cls in KINDS.items()}
    for name, part in defs.items():
        kind = titles.get(name)
        if kind is None:
            continue
        part["examples"] = [KIND_EXAMPLES[kind]]
        for option, step in OPTION_EXAMPLES.items():
            if option in part.get("properties", {}) and option in step:
                part["properties"][option]["examples"] = [step[option]]
    for field, value in FLOW_EXAMPLES.items():
        schema["properties"][field]["examples"] = [value]
    for name, part in defs.items():
        kind = next((k for k in TRIGGER_EXAMPLES if name.lower() == f"{k}trigger"), None)
        if kind is not None:
            part["examples"] = [TRIGGER_EXAMPLES[kind]]
    return schema
