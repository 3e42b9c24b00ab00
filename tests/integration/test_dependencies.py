"""Python steps get the packages they import: resolved to a lock with uv (real PyPI),
installed once per lock into an environment shared by the machine's workers, reused."""
from __future__ import annotations

import importlib.util
import shutil

import pytest

from config.settings import load_settings
from orchestrator.definitions.requirements import requirements_of
from orchestrator.errors import ValidationError
from orchestrator.executors.environments import Index, environment_name
from orchestrator.services.dependencies import lock_for

pytestmark = pytest.mark.integration

TABLE = """id: deps/table
steps:
  - id: pretty
    python: |
      from tabulate import tabulate
      def main(n: int) -> str:
          return tabulate([[n, n * 2]], tablefmt="plain")
    with: {n: 21}
"""
PINNED = """id: deps/pinned
steps:
  - id: each
    for_each: "${{ range(20) | list }}"
    parallel: true
    do:
      - id: version
        python: |
          # /// script
          # dependencies = ["six==1.16.0"]
          # ///
          import six
          def main() -> str:
              return six.__version__
"""


def builds_of(name: str) -> int:
    log = load_settings().home / "envs" / "builds.log"
    return sum(line.startswith(name) for line in log.read_text().splitlines()) if log.exists() else 0


def test_a_package_the_worker_lacks_is_installed_and_its_environment_reused(run_flow, engine) -> None:
    assert importlib.util.find_spec("tabulate") is None  # not in the worker's own environment
    first = run_flow(TABLE, timeout=300)
    assert first.status == "succeeded", first.error
    assert first.result == "21  42"
    name = environment_name(lock_for(engine, requirements_of("import tabulate"), Index()))
    built = builds_of(name)
    assert built >= 1  # built this time or by an earlier run of these tests (kept under .millrace/)
    second = run_flow(TABLE)
    assert second.result == "21  42"
    assert builds_of(name) == built  # no resolve, no install: the same environment


def test_twenty_steps_asking_at_once_build_the_environment_once_and_get_the_pin(run_flow, engine) -> None:
    code = '# /// script\n# dependencies = ["six==1.16.0"]\n# ///\n'
    lock = lock_for(engine, requirements_of(code), Index())
    assert "six==1.16.0" in lock
    name = environment_name(lock)
    shutil.rmtree(load_settings().home / "envs" / name, ignore_errors=True)  # make it new
    before = builds_of(name)
    run = run_flow(PINNED, timeout=300)
    assert run.status == "succeeded", run.error
    assert run.result == ["1.16.0"] * 20  # the pin, not whatever the worker has
    assert builds_of(name) == before + 1


def test_a_package_that_does_not_exist_is_refused_with_the_resolvers_message(run_flow) -> None:
    with pytest.raises(ValidationError) as caught:
        run_flow("id: deps/unknown\nsteps:\n  - id: x\n    python: |\n"
                 "      # /// script\n      # dependencies = [\"millrace-no-such-package-zz\"]\n      # ///\n"
                 "      def main():\n          return 1\n")
    problem = caught.value.problems[0]
    assert problem.path == "steps[0].python"
    assert "millrace-no-such-package-zz" in problem.message and "not found in the package registry" in problem.message


def test_a_javascript_step_gets_the_npm_packages_it_imports(run_flow) -> None:
    run = run_flow("""id: deps/npm
steps:
  - id: pad
    javascript: |
      import leftPad from "left-pad";
      import { createHash } from "node:crypto";
      export function main(text, width) {
        return { padded: leftPad(text, width, "*"), sha: createHash("sha1").update(text).digest("hex").slice(0, 8) };
      }
    with: {text: "mill", width: 8}
""", timeout=300)
    assert run.status == "succeeded", run.error
    assert run.result == {"padded": "****mill", "sha": "be37ec2e"}


def test_an_npm_package_that_does_not_exist_is_refused_with_npms_message(run_flow) -> None:
    with pytest.raises(ValidationError) as caught:
        run_flow("id: deps/npm_unknown\nsteps:\n  - id: x\n    javascript: |\n"
                 "      import nope from 'millrace-no-such-package-zz';\n      export function main() { return 1 }\n")
    problem = caught.value.problems[0]
    assert problem.path == "steps[0].javascript" and "npm packages do not resolve" in problem.message
    assert "404" in problem.message or "Not Found" in problem.message


def test_a_broken_environment_is_detected_and_rebuilt(run_flow, engine) -> None:
    run_flow(TABLE)
    name = environment_name(lock_for(engine, requirements_of("import tabulate"), Index()))
    folder = load_settings().home / "envs" / name
    shutil.rmtree(folder / "lib")  # half gone: its packages deleted under it
    (folder / ".millrace-complete").unlink()
    before = builds_of(name)
    again = run_flow(TABLE)
    assert again.status == "succeeded", again.error
    assert builds_of(name) == before + 1


def test_a_subflow_files_missing_package_is_refused_before_any_run_exists(engine, tmp_path) -> None:
    """A subflow file is checked and locked like the flow naming it: its mistake is found when
    the flow is loaded, named by the subflow file, and nothing is recorded."""
    from sqlalchemy import func, select

    from orchestrator.cli.client import Client
    from orchestrator.cli.files import save_flow_file
    from orchestrator.errors import ValidationError
    from orchestrator.store.tables import runs

    (tmp_path / "child.yaml").write_text(
        "id: test/sub_missing_child\nsteps:\n  - id: use\n"
        "    python: \"import millrace_no_such_package_zz\\ndef main():\\n    return 1\"\n")
    (tmp_path / "parent.yaml").write_text(
        "id: test/sub_missing_parent\nsteps:\n  - {id: call, flow: child.yaml}\n")
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(runs)).scalar()
    with pytest.raises(ValidationError) as refused:
        save_flow_file(Client(), tmp_path / "parent.yaml")
    [problem] = refused.value.problems
    assert problem.path == f"{tmp_path / 'child.yaml'}:4: steps[0].python"  # the file, the line, the place
    assert "millrace-no-such-package-zz" in problem.message and "not found in the package registry" in problem.message
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar() == before
