"""Windmill scripts' code as Millrace runs it: wmill calls, positional Bash, `$1` SQL, imports."""
from __future__ import annotations

import pytest

from orchestrator.definitions.script_inputs import infer_schema
from orchestrator.importers.report import Verdict
from orchestrator.importers.windmill_code import Variables, language_of, translate_code
from orchestrator.importers.windmill_expressions import Untranslatable


def test_python_wmill_calls_become_parameters_filled_from_declared_secrets_and_variables():
    variables = Variables(plain_paths=frozenset({"f/vars/region"}))
    code = translate_code("python3", (
        "import wmill\n\n\ndef main(x: int, *, y: str = 'a', **rest):\n"
        "    token = wmill.get_variable('u/admin/token')\n"
        "    region = wmill.get_variable(\"f/vars/region\")\n"
        "    db = wmill.get_resource('f/res/pg')\n"
        "    return [x, token, region, db]\n"), variables)
    assert code.key == "python"
    assert "wmill" not in code.code
    assert code.extra == {"u_admin_token": "${{ secrets.u_admin_token }}", "f_vars_region": "${{ vars.f_vars_region }}",
                          "f_res_pg": "${{ secrets.f_res_pg }}"}
    assert set(infer_schema("python", code.code)["properties"]) >= {"x", "u_admin_token", "f_vars_region", "f_res_pg"}
    namespace: dict = {}
    exec(code.code, namespace)  # noqa: S102 - the translated test code itself
    assert namespace["main"](1, u_admin_token="t", f_vars_region="eu", f_res_pg={"host": "h"}) == [1, "t", "eu",
                                                                                                    {"host": "h"}]
    assert variables.declared == {"u_admin_token": "secret", "f_vars_region": "variable", "f_res_pg": "secret"}


def test_python_calling_other_wmill_functions_is_untranslatable():
    with pytest.raises(Untranslatable, match="wmill.set_state"):
        translate_code("python3", "import wmill\ndef main():\n    wmill.set_state(1)\n", Variables())


def test_typescript_keeps_its_types_loses_the_client_import_and_gets_plain_npm_names():
    code = translate_code("deno", (
        'import * as wmill from "npm:windmill-client@1.300.0";\n'
        'import { camelCase } from "npm:lodash-es@4.17.21";\n'
        "export async function main(a: number, b = { c: 1 }) {\n"
        '  const key = await wmill.getVariable("f/vars/api_key");\n'
        "  return camelCase(`${a} ${key}`);\n}\n"), Variables())
    assert code.key == "typescript"
    assert "windmill-client" not in code.code and 'from "lodash-es"' in code.code
    assert "function main(a: number, b = { c: 1 }, f_vars_api_key?: any)" in code.code
    assert "await f_vars_api_key" in code.code
    assert any(v is Verdict.APPROXIMATED and "lodash-es" in m for v, m in code.notes)


@pytest.mark.parametrize(("code", "reason"), [
    ('import x from "https://deno.land/x/y.ts";\nexport function main() {}', "from a URL"),
    ("export function main() { return Deno.env.get('X') }", "Deno's own API"),
    ('import * as wmill from "windmill-client";\nexport function main() { return wmill.setState(1) }',
     "wmill.setState"),
])
def test_typescript_that_needs_windmill_or_deno_is_untranslatable(code, reason):
    with pytest.raises(Untranslatable, match=reason):
        translate_code("bun", code, Variables())


def test_bash_positional_arguments_become_the_named_variables_millrace_passes():
    code = translate_code("bash", 'who="$1"\ngreeting="${2:-hello}"\necho "$greeting $who ${1}"\n', Variables())
    assert code.key == "bash"
    assert "$1" not in code.code and "${1}" not in code.code
    schema = infer_schema("bash", code.code)
    assert schema["required"] == ["who"] and set(schema["properties"]) == {"who", "greeting"}


def test_bash_reading_arguments_as_a_list_is_untranslatable():
    with pytest.raises(Untranslatable, match=r"\$@"):
        translate_code("bash", 'for a in "$@"; do echo $a; done\n', Variables())


def test_postgres_numbered_parameters_become_named_ones_and_percent_signs_are_escaped():
    code = translate_code("postgresql", "-- $1 name\n-- $2 qty = 3\n"
                                        "SELECT $1::text AS n, $2::int AS q, 'a%b $3' AS t -- 100%\n", Variables())
    assert code.key == "sql"
    assert code.code == ("-- $1 name\n-- $2 qty = 3\n"
                         "SELECT %(name)s::text AS n, %(qty)s::int AS q, 'a%%b $3' AS t -- 100%%\n")


def test_postgres_parameter_without_a_name_is_untranslatable():
    with pytest.raises(Untranslatable, match=r"\$2 has no"):
        translate_code("postgresql", "-- $1 a\nSELECT $1, $2\n", Variables())


@pytest.mark.parametrize(("language", "key"), [("go", None), ("mysql", None), ("powershell", None)])
def test_languages_millrace_does_not_run_are_untranslatable(language, key):
    with pytest.raises(Untranslatable, match=f"'{language}' has no Millrace step kind"):
        translate_code(language, "", Variables())


@pytest.mark.parametrize(("name", "language"), [
    ("a.py", "python3"), ("a.deno.ts", "deno"), ("a.ts", "bun"), ("a.pg.sql", "postgresql"), ("a.sh", "bash"),
    ("a.my.sql", "mysql"), ("a.go", "go"), ("a.script.yaml", None), ("a.lock", None),
])
def test_a_sync_trees_file_endings_name_their_language(name, language):
    assert language_of(name) == language


def test_comments_in_mains_parameters_and_elsewhere_are_not_read_as_code():
    code = translate_code("bun", (
        'import * as wmill from "windmill-client";\n'
        "// const x = await wmill.getVariable('u/a/b')\n"
        "export async function main(\n  a: number,\n  //c: Postgresql, don't (pass) this\n"
        "  //d: wmill.S3Object,\n  e = 'x',\n) {\n  return a;\n}\n"), Variables())
    assert code.extra == {} and "wmill" not in code.code.split("export")[1]
    assert set(infer_schema("javascript", code.code)["properties"]) == {"a", "e"}
