"""TypeScript steps and scripts: transpiled when saved (esbuild, installed like any npm
package), run as JavaScript by a real, sandboxed worker."""
from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from sqlalchemy import func, select

from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import ValidationError
from orchestrator.executors.environments import COMPLETE, environment_name
from orchestrator.executors.typescript import TRANSPILER
from orchestrator.services.saving import save_flow
from orchestrator.store.locks import lock_of
from orchestrator.store.tables import transpiled_code

pytestmark = pytest.mark.integration

HOME = Path(os.environ["MILLRACE_HOME"])

TYPED = """id: ts/typed
inputs:
  n: {type: integer}
steps:
  - id: numbers
    typescript: |
      import type { Buffer } from "node:buffer";
      interface Summary { values: number[]; label: string; uid: number }
      type Scale = 1 | 2 | 3;
      export async function main(n: number, label: string = "ts", scale: Scale = 2): Promise<Summary> {
        const values: number[] = Array.from({ length: n }, (_, i) => (i + 1) * scale);
        return { values, label, uid: process.getuid!() } satisfies Summary;
      }
    with: {n: "${{ inputs.n }}"}
  - id: total
    python: |
      def main(data: dict) -> dict:
          return {"sum": sum(data["values"]), "label": data["label"]}
    with: {data: "${{ steps.numbers.result }}"}
  - id: padded
    typescript: |
      import leftPad from "left-pad";
      export const main = async (total: { sum: number }, width: number): Promise<string> =>
        leftPad(String(total.sum), width, "0");
    with: {total: "${{ steps.total.result }}", width: 6}
"""


def test_a_typescript_step_runs_in_the_sandbox_and_passes_values_on(run_flow) -> None:
    run = run_flow(TYPED, {"n": 4}, timeout=300)
    assert run.status == "succeeded", run.error
    numbers, total, padded = (step.result for step in run.steps)
    assert numbers["values"] == [2, 4, 6, 8] and numbers["label"] == "ts"
    assert numbers["uid"] == pwd.getpwnam("millrace-step").pw_uid  # the sandbox's user, not the worker's
    assert total == {"sum": 20, "label": "ts"}
    assert padded == "000020"  # an npm import, as a JavaScript step's


def test_a_windmill_style_script_runs_as_a_step(run_flow) -> None:
    run = run_flow("""id: ts/windmill
steps:
  - id: greet
    typescript: |
      // a Windmill (Bun/Deno) script, its wmill import left out
      type Greeting = { text: string; at: number };
      export async function main(name: string, times = 2, loud?: boolean): Promise<Greeting> {
        const text = Array(times).fill(`hello ${name}`).join(", ");
        return { text: loud ? text.toUpperCase() : text, at: times };
      }
    with: {name: mill}
""")
    assert run.status == "succeeded", run.error
    assert run.steps[0].result == {"text": "hello mill, hello mill", "at": 2}


def test_a_thrown_error_names_the_typescript_line(run_flow) -> None:
    run = run_flow("""id: ts/throws
steps:
  - id: boom
    typescript: |
      type Order = { id: number };
      interface Refund { order: Order }

      export function main(): Refund {
        const order: Order = { id: 7 };
        throw new RangeError(`order ${order.id} is past refunding`);
      }
""")
    assert run.status == "failed" and run.error == "step boom failed: RangeError: order 7 is past refunding"
    assert "step.ts:6:" in run.steps[0].logs, run.steps[0].logs  # line 6 of the TypeScript, not of the JavaScript


def test_a_syntax_error_is_refused_with_the_step_path_line_and_column(api) -> None:
    saved = api.put("/api/v1/flows/ts/broken", data="""id: ts/broken
steps:
  - {id: fine, bash: echo fine}
  - id: bad
    typescript: |
      export function main(a: number): number {
        const b: number = a +;
        return b;
      }
    with: {a: 1}
""", headers={"Content-Type": "application/yaml"})
    assert saved.status_code == 422, saved.json
    assert [(e["path"], e["message"]) for e in saved.json["errors"]] == [
        ("steps[1].typescript (line 2, column 24)", 'TypeScript syntax error: Unexpected ";"')]
    assert api.get("/api/v1/flows/ts/broken").status_code == 404  # nothing stored


def test_a_type_error_is_not_a_save_error(run_flow) -> None:
    run = run_flow("id: ts/loose\nsteps:\n  - id: s\n    typescript: |\n"
                   "      export function main(): number { const n: number = 'five' as any; return n.length; }\n")
    assert run.status == "succeeded" and run.steps[0].result == 4


TS_ADD = """export async function main(a: number, b: number = 10, tags: string[] = []): Promise<string> {
  return `${a + b}:${tags.join("+")}`;
}
"""


def test_a_typescript_saved_script_reads_its_typed_inputs_and_runs(api) -> None:
    saved = api.put("/api/v1/scripts/ts/add", json={"language": "typescript", "code": TS_ADD})
    assert saved.status_code == 201, saved.json
    assert saved.json["language"] == "typescript" and saved.json["code"] == TS_ADD  # the TypeScript is what is shown
    assert saved.json["input_schema"] == {
        "type": "object", "additionalProperties": False, "required": ["a"],
        "properties": {"a": {"type": "number"}, "b": {"type": "number", "default": 10},
                       "tags": {"type": "array", "items": {"type": "string"}, "default": []}}}
    wrong = api.put("/api/v1/flows/ts/uses_add", data="id: ts/uses_add\nsteps:\n"
                    "  - {id: add, script: ts/add, with: {a: seven}}\n", headers={"Content-Type": "application/yaml"})
    assert wrong.status_code == 422 and wrong.json["errors"][0]["path"] == "steps[0].with.a"
    api.save_flow("id: ts/uses_add\nsteps:\n  - {id: add, script: ts/add, with: {a: 3, tags: [x, y]}}\n")
    run = api.post("/api/v1/flows/ts/uses_add/runs?wait=60", json={}).json
    assert run["status"] == "succeeded", run
    assert run["steps"][0]["result"] == "13:x+y"
    broken = api.put("/api/v1/scripts/ts/broken", json={"language": "typescript",
                                                         "code": "export function main() {\n  return (1;\n}\n"})
    assert broken.status_code == 422
    assert broken.json["errors"][0]["path"] == "code (line 2, column 12)"


def test_the_transpiler_is_installed_once_and_each_code_transpiled_once(engine) -> None:
    for n in range(3):  # three flows, two of them the same code
        code = f"export function main(): number {{ return {min(n, 1)} as number; }}"
        text = f"id: ts/cached{n}\nsteps:\n  - id: s\n    typescript: {code!r}\n"
        save_flow(engine, parse_flow(text), text, home=HOME)
    lock = lock_of(engine, [f"npm:{TRANSPILER}"])
    assert lock is not None and '"node_modules/esbuild"' in lock  # locked like a step's npm package
    folder = HOME / "npm" / environment_name(lock)
    assert (folder / COMPLETE).exists()
    builds = (HOME / "npm" / "builds.log").read_text().split()
    assert builds.count(folder.name) == 1  # built once for this home, however many saves
    with engine.connect() as conn:
        kept = conn.execute(select(func.count()).select_from(transpiled_code).where(
            transpiled_code.c.javascript.like("%return 1;%"))).scalar_one()
    assert kept == 1  # the same TypeScript is kept once


def test_an_unknown_npm_import_in_typescript_is_refused_at_its_path(engine) -> None:
    text = ("id: ts/npm_unknown\nsteps:\n  - id: x\n    typescript: |\n"
            "      import nope from 'millrace-no-such-package-zz';\n"
            "      export function main(): number { return nope(); }\n")
    with pytest.raises(ValidationError) as caught:
        save_flow(engine, parse_flow(text), text, home=HOME)
    problem = caught.value.problems[0]
    assert problem.path == "steps[0].typescript" and "npm packages do not resolve" in problem.message
