"""The layout's rules, checked on the source: imports go one way, the pure packages touch
no I/O, no module grows past about 400 lines (migrations aside)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ("orchestrator.definitions", "orchestrator.execution")
IO = ("sqlalchemy", "psycopg", "flask", "kombu", "requests", "orchestrator.store", "orchestrator.services",
      "orchestrator.executors", "orchestrator.observe", "orchestrator.cli", "tasks", "api")
MAX_LINES = 420


def _modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("orchestrator", "tasks", "api", "config"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            found.append((".".join(path.relative_to(ROOT).with_suffix("").parts), path))
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_go_one_way(module: str, path: Path) -> None:
    imported = _imports(path)
    if _under(module, PURE):
        assert not {n for n in imported if _under(n, IO)}, f"{module} is pure: no I/O imports"
    if _under(module, ("orchestrator",)) and not _under(module, ("orchestrator.cli",)):
        # api -> orchestrator <- tasks; only the CLI, the composition root, wires them together
        assert not {n for n in imported if _under(n, ("api", "tasks"))}, f"{module} imports api or tasks"
    if _under(module, ("api",)):
        assert not {n for n in imported if _under(n, ("tasks",))}, f"{module}: the API does not import tasks"
    if _under(module, ("tasks",)):
        assert not {n for n in imported if _under(n, ("api",))}, f"{module}: tasks do not import the API"


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_no_module_grows_past_about_400_lines(module: str, path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{module}: split it where its concepts part"


def _sqlalchemy_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sqlalchemy"):
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("sqlalchemy")}
    return names


def test_sql_is_written_in_the_store_only() -> None:
    """Outside orchestrator/store (the chord backend and sql steps aside) SQLAlchemy is only
    a type to pass along or an error to catch: no statement is built anywhere else."""
    allowed = {"orchestrator.executors.sql", "tasks.backend"}
    harmless = {"sqlalchemy.Engine", "sqlalchemy.Connection"}
    builders = {m: sorted(n for n in _sqlalchemy_names(path)
                          if n not in harmless and not n.startswith("sqlalchemy.exc"))
                for m, path in _modules() if not _under(m, ("orchestrator.store",)) and m not in allowed}
    assert {m: names for m, names in builders.items() if names} == {}
