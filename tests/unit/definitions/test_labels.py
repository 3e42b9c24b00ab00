"""Labels, debounce and priority in a document and at a start: what is accepted, what is
refused with its path, how layers of labels combine and how filters read."""
from __future__ import annotations

import pytest

from api.runs import input_values, label_filters
from orchestrator.definitions.labels import check_labels, label_value, merged, parse_label_filter, parse_label_option
from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import ValidationError
from orchestrator.execution.checks import added_labels, compile_checks
from orchestrator.execution.compiler import compile_run
from orchestrator.execution.context import Context
from orchestrator.execution.messages import RunRef
from orchestrator.execution.plan import build_plan

STEP = '    python: "def main():\\n    return {\'count\': 3}"\n'


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_flow(text)
    return [(p.path, p.message) for p in caught.value.problems]


def test_a_flow_with_labels_priority_debounce_and_a_step_label_is_accepted():
    flow = parse_flow("id: t/l\nlabels: {team: billing}\npriority: 7\nconcurrency: {debounce: 30s}\nsteps:\n"
                      f"  - id: s\n{STEP}    labels: {{rows: \"${{{{ result.count }}}}\"}}\n")
    assert flow.labels == {"team": "billing"} and flow.priority == 7
    assert flow.concurrency.debounce == 30.0 and flow.concurrency.limit is None


@pytest.mark.parametrize(("document", "path"), [
    ("labels: {'bad key': x}\n", "labels"),
    ("labels: {team: 3}\n", "labels.team"),
    ("priority: 10\n", "priority"),
    ("concurrency: {on_limit: fail}\n", "concurrency"),
])
def test_bad_labels_priority_and_concurrency_are_refused_with_their_path(document, path):
    found = problems(f"id: t/l\n{document}steps:\n  - id: s\n{STEP}")
    assert any(p == path or p.startswith(path + ".") for p, _ in found), found


def test_a_step_label_reads_result_and_only_known_names():
    found = problems(f"id: t/l\nsteps:\n  - id: s\n{STEP}    labels: {{rows: \"${{{{ nope }}}}\"}}\n")
    assert found[0][0] == "steps[0].labels.rows" and "unknown name 'nope'" in found[0][1]


def test_a_label_on_a_waiting_step_is_refused():
    found = problems("id: t/l\nsteps:\n  - id: gate\n    approval: {}\n    labels: {who: x}\n")
    assert found == [("steps[0].labels", found[0][1])] and "does not apply to approval steps" in found[0][1]


def test_a_step_label_is_its_result_rendered_as_a_string():
    flow = parse_flow(f"id: t/l\nsteps:\n  - id: s\n{STEP}    labels: {{rows: \"${{{{ result.count }}}}\", "
                      "ok: \"${{ result.count > 1 }}\"}\n")
    checks = compile_checks(flow.steps[0])
    assert added_labels(checks.labels, {}, {"count": 3}) == {"rows": "3", "ok": "true"}
    assert label_value(None) == "" and label_value(2.5) == "2.5"


def test_later_labels_win():
    assert merged({"team": "a", "env": "dev"}, None, {"env": "prod"}) == {"team": "a", "env": "prod"}


def test_labels_given_at_a_start_are_checked_with_their_path():
    assert check_labels({"team": "billing"}) == {"team": "billing"}
    with pytest.raises(ValidationError) as caught:
        check_labels({"team": 3})
    assert caught.value.problems[0].path == "labels.team"


def test_label_filters_and_options_read_key_then_value():
    assert parse_label_filter("url:https://x") == ("url", "https://x")
    assert parse_label_option("team=billing") == ("team", "billing")
    assert label_filters(["team:billing", "env:prod"]) == {"team": "billing", "env": "prod"}
    for bad in (["nocolon"], ["team:a", "team:b"]):
        with pytest.raises(ValidationError):
            label_filters(bad)


def test_an_input_filter_matches_the_json_value_and_its_text():
    assert input_values("42") == (42, "42")
    assert input_values("true") == (True, "true")
    assert input_values('"42"') == ("42",)
    assert input_values("acme") == ("acme",)


def test_every_message_of_a_run_with_a_priority_carries_it():
    flow = parse_flow(f"id: t/p\nsteps:\n  - id: s\n{STEP}")
    plan = build_plan(flow, 1)
    ref = RunRef("r", "t/p", 1, priority=8)
    signature = compile_run(plan, ref, Context.new("r", "t/p", 1, {}))
    tasks = signature.tasks if hasattr(signature, "tasks") else [signature]
    assert all(t.options.get("priority") == 8 and t.kwargs["priority"] == 8 for t in tasks)
    assert RunRef.from_kwargs(ref.kwargs()) == ref
    assert "priority" not in RunRef("r", "t/p", 1).kwargs()  # a message without one reads as before
