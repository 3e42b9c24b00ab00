"""Whatever a Kestra file holds, the translator answers with a report, never an exception, and
every expression it writes is one Millrace can compile."""
from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.definitions.expressions import compile_value
from orchestrator.importers import kestra
from orchestrator.importers.kestra_pebble import Names, Untranslatable, text

HOSTILE = {
    "broken.yaml": "id: [unclosed\n",
    "list.yaml": "- id: a\n- id: b\n",
    "tasks_number.yaml": "id: a\nnamespace: n\ntasks: 5\n",
    "tasks_odd.yaml": "id: a\nnamespace: n\ntasks:\n  - 3\n  - {id: x}\n  - {type: io.kestra.plugin.core.log.Log}\n",
    "ids.yaml": "id: 7\nnamespace: [x]\ntasks: []\n",
    "triggers.yaml": "id: a\nnamespace: n\ntasks: []\ntriggers: [1, {type: io.kestra.plugin.core.trigger.Schedule}]\n",
}


def test_files_that_are_no_kestra_flow_are_problems_in_the_report(tmp_path: Path) -> None:
    for name, body in HOSTILE.items():
        (tmp_path / name).write_text(body)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00id: a")
    reports = {Path(r.source).name: r for r in kestra.translate([tmp_path])}
    assert set(reports) == {*HOSTILE, "binary.yaml"}
    for name in ("broken.yaml", "list.yaml", "ids.yaml", "binary.yaml"):
        assert reports[name].problems and not reports[name].flows, name
    for name in ("tasks_number.yaml", "tasks_odd.yaml", "triggers.yaml"):
        assert reports[name].untranslatable, name


ATOMS = st.sampled_from(["inputs.a", "inputs['b-c']", "outputs.t.value", "vars.v", "1", "'s'", "true",
                         "secret('X')", "kv('k')", "taskrun.value", "now()", "x"])
OPERATORS = st.sampled_from([" + ", " ~ ", " == ", " and ", " ?? ", " or ", " > "])
FILTERS = st.sampled_from(["", " | upper", " | lower", " | trim", " | default('z')", " | length", " | json"])


@st.composite
def pebble(draw) -> str:
    parts = [draw(ATOMS)]
    for _ in range(draw(st.integers(0, 3))):
        parts += [draw(OPERATORS), draw(ATOMS)]
    return "{{ " + "".join(parts) + draw(FILTERS) + " }}"


NOISE = st.text(alphabet="{}|?:.()[]'\" abc01+-~%", max_size=25).map(lambda s: "{{ " + s + " }}")


@settings(max_examples=400, suppress_health_check=list(HealthCheck), deadline=None)
@given(st.lists(st.one_of(pebble(), NOISE, st.text(max_size=5)), min_size=1, max_size=3))
def test_a_translated_template_always_compiles_or_is_untranslatable(pieces: list[str]) -> None:
    names = Names(inputs={"a": "a", "b-c": "b_c"}, outputs={"t": "steps.t.result"}, variables={"v": "w"})
    try:
        translated = text("".join(pieces), names)
    except Untranslatable:
        return
    compile_value(translated)
