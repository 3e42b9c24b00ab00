"""Whatever a file holds, the import reports on it: no exception escapes, an untranslatable
expression is refused as such, and what it translates compiles as a Millrace expression."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import Environment

from orchestrator.cli.commands.imports import check
from orchestrator.importers.windmill import translate
from orchestrator.importers.windmill_expressions import ExprScope, Untranslatable, to_jinja

_WORDS = ["rawscript", "script", "flow", "forloopflow", "whileloopflow", "branchone", "branchall", "identity",
          "static", "javascript", "python3", "bash", "postgresql", "bun", "go", "flow_input.x", "results.a",
          "$var:f/a", "$res:f/b", "def main(x):\n    return x", 'x="$1"\necho $x', "-- $1 a\nSELECT $1"]
_KEYS = ["id", "value", "type", "modules", "content", "language", "input_transforms", "iterator", "branches",
         "default", "expr", "path", "parallel", "parallelism", "skip_failures", "suspend", "retry", "sleep",
         "stop_after_if", "skip_if", "timeout", "cache_ttl", "constant", "exponential", "attempts", "seconds",
         "resume_form", "schema", "properties", "required", "failure_module", "preprocessor_module",
         "concurrent_limit", "mock", "enabled", "summary", "x", "tag", "a", "database"]
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=8), st.sampled_from(_WORDS))
_TREE = st.recursive(_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)),
                     max_leaves=30)
_HOSTILE = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@_HOSTILE
@given(value=_TREE, schema=_TREE)
def test_any_document_gets_a_report_and_never_an_exception(tmp_path_factory, value, schema):
    path = tmp_path_factory.mktemp("hostile") / "flow.json"
    path.write_text(json.dumps({"summary": "hostile", "value": value, "schema": schema}))
    for report in translate([path]):
        check(report)
        assert report.flows or report.problems


_JS = st.lists(st.sampled_from(["flow_input.x", "results.a", "results.a.b", "flow_input.iter.value", "1", "'s'",
                                "`t${flow_input.x}`", "+", "-", "*", "===", "&&", "||", "!", "?", ":", "(", ")",
                                "[", "]", "{", "}", ",", ".", "length", "toUpperCase()", "??", "null", "x", "=>"]),
               max_size=12).map(" ".join)


@_HOSTILE
@given(source=st.one_of(_JS, st.text(max_size=30)))
def test_an_expression_is_refused_as_untranslatable_or_parses_as_jinja(source):
    scope = ExprScope(results={"a": "steps.a.result"}, previous="steps.a.result", in_loop=True)
    try:
        jinja = to_jinja(source, scope)
    except Untranslatable:
        return
    Environment().parse("{{ " + jinja + " }}")  # a constant one may still fail when evaluated, as in Windmill
