"""A script's input schema, read from its code in each language."""
from __future__ import annotations

import pytest

from orchestrator.definitions.script_inputs import infer_schema
from orchestrator.errors import ValidationError


def props(language: str, code: str) -> tuple[dict, list]:
    schema = infer_schema(language, code)
    return schema["properties"], schema["required"]


def test_python_hints_defaults_and_keyword_only_parameters() -> None:
    code = ("from typing import Literal, Optional\n"
            "def main(n: int, name: str = 'x', *, tags: list[str] | None = None,\n"
            "         mode: Literal['a', 'b'] = 'a', ratio: 'float' = 0.5, anything=object(),\n"
            "         table: dict[str, int] = {}, maybe: Optional[bool] = None):\n    pass")
    found, required = props("python", code)
    assert required == ["n"]
    assert found == {
        "n": {"type": "integer"},
        "name": {"type": "string", "default": "x"},
        "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}], "default": None},
        "mode": {"enum": ["a", "b"], "default": "a"},
        "ratio": {"type": "number", "default": 0.5},
        "anything": {},
        "table": {"type": "object", "additionalProperties": {"type": "integer"}, "default": {}},
        "maybe": {"type": ["boolean", "null"], "default": None},
    }


def test_python_kwargs_accepts_more_names() -> None:
    assert infer_schema("python", "def main(a, **rest):\n    pass")["additionalProperties"] is True
    assert infer_schema("python", "def main(a):\n    pass")["additionalProperties"] is False


def test_javascript_and_typescript_parameters() -> None:
    found, required = props("javascript", "export async function main(a: number, b: string[], c?: boolean,"
                                          " d = 3, e: { x: number } = {x: 1}) { return a }")
    assert required == ["a", "b"]
    assert found == {"a": {"type": "number"}, "b": {"type": "array", "items": {"type": "string"}},
                     "c": {"type": "boolean"}, "d": {"default": 3}, "e": {"type": "object"}}
    assert props("javascript", "const main = async (x, y) => x + y")[1] == ["x", "y"]


def test_typescript_types_map_to_json_types() -> None:
    found, required = props("typescript", 'export async function main(n: bigint, when: Date, tags: Array<string>,\n'
                                           '  color: "red" | "blue" = "red", note: string | null = null,\n'
                                           '  counts: Record<string, number> = {}, pool: wmill.Resource<"pg">) {}')
    assert found == {"n": {"type": "integer"}, "when": {"type": "string"},
                     "tags": {"type": "array", "items": {"type": "string"}},
                     "color": {"enum": ["red", "blue"], "default": "red"},
                     "note": {"type": ["string", "null"], "default": None},
                     "counts": {"type": "object", "default": {}}, "pool": {}}
    assert required == ["n", "when", "tags", "pool"]


def test_bash_inputs_are_variables_read_and_never_set() -> None:
    code = ('# greets $nobody\nset -e\ncount=3\nfor i in 1 2; do echo "$i $count"; done\n'
            'echo "hello ${name}, ${greeting:-hi}" $HOME $MILLRACE_RUN_ID \'$quoted\'\nread -r line; echo $line')
    found, required = props("bash", code)
    assert list(found) == ["name", "greeting"] and required == ["name"]


def test_sql_inputs_are_its_named_parameters() -> None:
    found, required = props("sql", "select * from t where a = %(a)s and b > %(since)s or a = %(a)s")
    assert list(found) == ["a", "since"] and required == ["a", "since"]


@pytest.mark.parametrize(("language", "code", "path"), [
    ("python", "def main(:", "code (line 1, column 10)"),
    ("python", "\n\nclass main: pass", "code"),
    ("python", "def main(a, /, b): pass", "code (line 1)"),
    ("javascript", "function helper() {}", "code"),
    ("javascript", "function main({a, b}) {}", "code (line 1)"),
])
def test_code_that_cannot_be_read_names_the_place(language, code, path) -> None:
    with pytest.raises(ValidationError) as caught:
        infer_schema(language, code)
    assert caught.value.problems[0].path == path
