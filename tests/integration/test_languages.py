"""JavaScript and SQL steps, and a flow that mixes all four languages, values passing
between them with their types."""
from __future__ import annotations

import pytest

from orchestrator.errors import ValidationError

pytestmark = pytest.mark.integration

MIXED = """id: lang/mixed
inputs:
  n: {type: integer, default: 4}
steps:
  - id: numbers
    python: |
      def main(n: int) -> dict:
          return {"values": list(range(1, n + 1)), "label": "py", "ratio": 0.5, "ok": True}
    with: {n: "${{ inputs.n }}"}
  - id: stats
    javascript: |
      export async function main(data, scale = 1) {
        const sum = data.values.reduce((a, b) => a + b, 0);
        return { sum: sum * scale, mean: sum / data.values.length, types: [typeof data.ok, typeof data.ratio],
                 tags: [data.label, "js"] };
      }
    with: {data: "${{ steps.numbers.result }}", scale: 2}
  - id: query
    sql: "SELECT %(total)s::int * 10 AS total, %(mean)s::float AS mean, %(tags)s::text[] AS tags, 'sql' AS lang"
    database: lang_db
    with: {total: "${{ steps.stats.result.sum }}", mean: "${{ steps.stats.result.mean }}",
           tags: "${{ steps.stats.result.tags }}"}
  - id: report
    bash: |
      printf '{"total": %s, "first_tag": "%s"}\\n' "$TOTAL" "$FIRST"
    with: {TOTAL: "${{ steps.query.result.rows[0].total }}", FIRST: "${{ steps.query.result.rows[0].tags[0] }}"}
"""


@pytest.fixture(scope="module")
def lang_db(engine, database_url):
    from config.settings import load_settings
    from orchestrator.store.variables import set_variable

    set_variable(engine, "lang_db", database_url, secret=True, keys=load_settings().secret_keys, actor="test")


def test_four_languages_pass_typed_values_along(run_flow, lang_db) -> None:
    run = run_flow(MIXED)
    assert run.status == "succeeded", run.error
    by_id = {s.step_id: s.result for s in run.steps}
    assert by_id["stats"] == {"sum": 20, "mean": 2.5, "types": ["boolean", "number"], "tags": ["py", "js"]}
    assert by_id["query"]["rows"] == [{"total": 200, "mean": 2.5, "tags": ["py", "js"], "lang": "sql"}]
    assert by_id["query"]["truncated"] is False
    assert run.result == {"total": 200, "first_tag": "py"}


def test_sql_binds_values_never_interpolates_and_reports_affected_rows(run_flow, lang_db) -> None:
    run = run_flow("""id: lang/sql
steps:
  - {id: make, sql: "CREATE TABLE IF NOT EXISTS lang_notes (body text)", database: lang_db}
  - id: add
    sql: "INSERT INTO lang_notes (body) VALUES (%(body)s), (%(body)s)"
    database: lang_db
    with: {body: "x'); DROP TABLE lang_notes; --"}
  - {id: read, sql: "SELECT body FROM lang_notes", database: lang_db}
""")
    assert run.status == "succeeded", run.error
    by_id = {s.step_id: s.result for s in run.steps}
    assert by_id["add"] == {"rows": [], "affected": 2}
    assert by_id["read"]["rows"][0] == {"body": "x'); DROP TABLE lang_notes; --"}


def test_sql_without_a_database_and_without_permission_fails_clearly(run_flow) -> None:
    run = run_flow("id: lang/nodb\nsteps:\n  - {id: q, sql: 'SELECT 1 AS one'}\n")
    assert run.status == "failed" and "MILLRACE_SQL_OWN_DATABASE=1" in run.error


def test_sql_timeout_and_errors_are_the_steps_failures(run_flow, lang_db) -> None:
    slow = run_flow("id: lang/slow\nsteps:\n  - {id: q, sql: 'SELECT pg_sleep(5)', database: lang_db, timeout: 1s}\n")
    assert slow.status == "failed" and "timed out after 1s" in slow.error
    bad = run_flow("id: lang/bad\nsteps:\n  - {id: q, sql: 'SELECT * FROM no_such_table', database: lang_db}\n")
    assert bad.status == "failed" and 'relation "no_such_table" does not exist' in bad.error


def test_javascript_errors_and_arguments(run_flow) -> None:
    thrown = run_flow("id: lang/throw\nsteps:\n"
                      "  - {id: j, javascript: 'function main() { throw new Error(\"no\") }'}\n")
    assert thrown.status == "failed" and "Error: no" in thrown.error
    with pytest.raises(ValidationError) as refused:  # seen in the code, so refused before anything runs
        run_flow("id: lang/args\nsteps:\n  - {id: j, javascript: 'function main(a) { return a }', with: {b: 1}}\n")
    assert [(p.path, p.message) for p in refused.value.problems] == [
        ("steps[0].with.b", "main takes no input 'b'; it takes: a"), ("steps[0].with", "main needs input 'a'")]


def test_a_javascript_parameter_left_out_takes_its_default(run_flow) -> None:
    run = run_flow("id: lang/js_default\nsteps:\n"
                   "  - {id: j, javascript: 'function main(a, b = 10, c) { return [a + b, c] }', with: {a: 1, c: x}}\n")
    assert run.status == "succeeded", run.error
    assert run.steps[0].result == [11, "x"]  # b is undefined, not null (1 + null would be 1)
