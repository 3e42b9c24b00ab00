"""The Kestra translator, pure: Pebble to ${{ }}, ids, inputs, triggers, failing steps."""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.commands.imports import check
from orchestrator.importers import kestra
from orchestrator.importers.kestra_pebble import Names, Untranslatable, condition, text

FIXTURES = Path(__file__).parents[2] / "fixtures" / "kestra"


def test_pebble_names_operators_and_filters_become_jinja() -> None:
    names = Names(inputs={"my-name": "my_name"}, outputs={"t": "steps.t.result"}, variables={"v": "x{{ inputs.a }}"})
    assert text("Hi {{ inputs['my-name'] | upper }}", names) == "Hi ${{ inputs.my_name | upper }}"
    assert text("{{ outputs.t.value ?? 'none' }}", names) == "${{ (steps.t.result.value) | default('none') }}"
    assert text("{{ inputs.a ? 1 : 2 }}", names) == "${{ ((1) if (inputs.a) else (2)) }}"
    assert text("{{ vars.v }}", names) == "${{ ('x' ~ (inputs.a)) }}"
    assert text("{{ secret('DB') }}/{{ kv('k') }}", names) == "${{ secrets.DB }}/${{ vars.k }}"
    assert names.secrets == {"DB"} and names.kv == {"k"}
    assert condition("{{ inputs.flag }}", names).endswith("| string | lower not in ('', 'false', '0', 'none') }}")


@pytest.mark.parametrize("source", ["{{ now() }}", "{{ x | jq('.a') }}", "{% if a %}b{% endif %}",
                                    "{{ outputs.missing.value }}", "{{ taskrun.value }}"])
def test_what_has_no_jinja_form_is_untranslatable(source: str) -> None:
    with pytest.raises(Untranslatable):
        text(source, Names())


def test_every_fixture_translates_to_a_valid_flow_and_ids_are_folded() -> None:
    reports = kestra.translate([FIXTURES])
    for report in reports:
        check(report)
    assert [r.problems for r in reports] == [[]] * len(reports)
    ids = {f.original: f.flow_id for r in reports for f in r.flows}
    assert ids["acme.onboarding.greet-user"] == "acme/onboarding/greet-user"
    assert [r.source.endswith("untranslatable.yaml") for r in reports if r.untranslatable] == [True]


def test_a_subflow_reference_and_triggers_are_rewritten() -> None:
    (report,) = kestra.translate([FIXTURES / "subflows" / "parent.yaml"])
    doc = report.flows[0].document
    assert doc["steps"][0]["flow"] == "acme/family/child-flow"
    assert doc["triggers"] == [{"id": "every-morning", "cron": "0 7 * * 1-5", "timezone": "Europe/Berlin",
                                "catchup": "none"}]
    (listener,) = kestra.translate([FIXTURES / "subflows" / "listener.yaml"])
    trigger = listener.flows[0].document["triggers"][0]
    assert trigger["flow"] == "acme/family/child-flow" and trigger["status"] == ["succeeded"]
    assert trigger["inputs"] == {"upstream": "${{ trigger.result.outputs['answer'] }}"}


def test_an_unknown_plugin_becomes_a_step_that_fails_naming_it(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text("id: f\nnamespace: n\ntasks:\n  - id: up-load\n    type: io.kestra.plugin.aws.s3.Upload\n")
    (report,) = kestra.translate([flow])
    step = report.flows[0].document["steps"][0]
    assert step["id"] == "up_load" and "io.kestra.plugin.aws.s3.Upload" in step["python"]
    assert report.untranslatable and report.findings[-1].source_path == "tasks[0]"


def test_pip_installs_become_declared_dependencies_and_outputs_a_return(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text("id: f\nnamespace: n\ntasks:\n  - id: py\n    type: io.kestra.plugin.scripts.python.Script\n"
                    "    beforeCommands: ['pip install requests==2.32.3']\n"
                    "    script: |\n      from kestra import Kestra\n      Kestra.outputs({'a': 1})\n")
    (report,) = kestra.translate([flow])
    code = report.flows[0].document["steps"][0]["python"]
    assert '# dependencies = ["requests==2.32.3"]' in code
    assert 'return {"vars": Kestra.collected, "exitCode": 0}' in code
