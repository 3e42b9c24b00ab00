"""What flows run with: ``flows``, ``scripts``, ``vars``, ``secrets`` and ``sync``."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from orchestrator.cli import files
from orchestrator.cli.client import Client
from orchestrator.cli.output import emit, note, output_option
from orchestrator.errors import Problem, ValidationError


@click.group("flows")
def flows_group() -> None:
    """Saved flows: list, show, save, delete."""


@flows_group.command("list")
@click.option("--prefix", default=None, help="only ids starting with this")
@click.option("--limit", type=click.IntRange(1, 100_000), default=None, help="at most this many (default: all)")
@output_option
@click.pass_obj
def flows_list(client: Client, prefix: str | None, limit: int | None, fmt: str) -> None:
    """Saved flows by id, with their latest version."""
    emit(client.pages("/flows", {"prefix": prefix}, limit=limit), fmt, ("id", "latest_version", "updated_at"))


@flows_group.command("show")
@click.argument("flow_id")
@click.option("--version", type=int, default=None, help="this version (default: the latest)")
@click.option("-o", "--output", "fmt", type=click.Choice(("source", "json", "yaml")), default="source",
              show_default=True, help="source: the document as saved; json/yaml: the saved version with it")
@click.pass_obj
def flows_show(client: Client, flow_id: str, version: int | None, fmt: str) -> None:
    """A saved flow: its source as saved (or the version as the API answers it)."""
    saved = client.call("GET", f"/flows/{flow_id}", params={"version": version}).body
    if fmt == "source":
        click.echo(saved["source"].rstrip("\n"))
    else:
        emit(saved, fmt)


@flows_group.command("save")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def flows_save(client: Client, paths: tuple[Path, ...]) -> None:
    """Save flow files (and the subflow files they name) as new versions; unchanged ones stay."""
    for path in paths:
        saved = files.save_flow_file(client, path)
        click.echo(f"{saved['id']}@{saved['version']}  ({path})")


@flows_group.command("delete")
@click.argument("flow_id")
@click.pass_obj
def flows_delete(client: Client, flow_id: str) -> None:
    """Delete a flow: it leaves listings and cannot start; its versions stay for its runs."""
    client.call("DELETE", f"/flows/{flow_id}")
    click.echo(f"deleted {flow_id}")


@click.group("scripts")
def scripts_group() -> None:
    """Saved scripts: code at a path that flows call with `script:`."""


@scripts_group.command("save")
@click.argument("script_path")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--language", type=click.Choice(sorted(set(files.SCRIPT_LANGUAGES.values()))), default=None,
              help="default: from the file's extension (.py .sh .js .sql)")
@click.option("--summary", default=None)
@click.pass_obj
def scripts_save(client: Client, script_path: str, file: Path, language: str | None, summary: str | None) -> None:
    """Save FILE's code as the next version of the script at SCRIPT_PATH (e.g. etl/clean_rows)."""
    language = language or files.SCRIPT_LANGUAGES.get(file.suffix)
    if language is None:
        raise click.UsageError(f"cannot tell {file}'s language from its extension: pass --language")
    saved = _save_script(client, script_path, language, file.read_text(encoding="utf-8"), summary)
    click.echo(f"{saved['path']}@{saved['version']}  inputs: {', '.join(saved['input_schema']['properties']) or '-'}")


@scripts_group.command("list")
@click.option("--prefix", default=None)
@output_option
@click.pass_obj
def scripts_list(client: Client, prefix: str | None, fmt: str) -> None:
    """Saved scripts by path, with their latest version."""
    emit(client.pages("/scripts", {"prefix": prefix}), fmt, ("path", "latest_version", "updated_at"))


def _save_script(client: Client, path: str, language: str, code: str, summary: str | None) -> dict[str, Any]:
    body = {"language": language, "code": code, **({"summary": summary} if summary else {})}
    return client.call("PUT", f"/scripts/{path}", json_body=body).body


@click.group("vars")
def vars_group() -> None:
    """Variables flows read as `vars.NAME`."""


@vars_group.command("set")
@click.argument("name")
@click.argument("value")
@click.option("--string", "as_string", is_flag=True, help="keep VALUE as a string even if it reads as JSON")
@click.pass_obj
def vars_set(client: Client, name: str, value: str, as_string: bool) -> None:
    """Set NAME to VALUE (read as JSON when it is: 3, true, [1, 2]; else a string)."""
    client.call("PUT", f"/variables/{name}", json_body={"value": value if as_string else _json_or_text(value)})
    click.echo(f"set {name}")


@vars_group.command("list")
@output_option
@click.pass_obj
def vars_list(client: Client, fmt: str) -> None:
    """Variables with their values, and secrets (set, never shown)."""
    items = client.pages("/variables")
    for item in items:
        if item["secret"]:
            item["value"] = "(secret)"
    emit(items, fmt, ("name", "secret", "value", "updated_at"))


@click.group("secrets")
def secrets_group() -> None:
    """Secrets flows read as `secrets.NAME`: encrypted at rest, never shown."""


@secrets_group.command("set")
@click.argument("name")
@click.pass_obj
def secrets_set(client: Client, name: str) -> None:
    """Set the secret NAME to what stdin holds (one line typed, or piped), never an argument."""
    if sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True)
    else:
        value = sys.stdin.read().removesuffix("\n")
    if not value:
        raise click.UsageError("no value on stdin")
    client.call("PUT", f"/variables/{name}", json_body={"value": value, "secret": True})
    click.echo(f"set secret {name}")


@click.command("sync")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="print what would change; change nothing")
@click.pass_obj
def sync_command(client: Client, directory: Path, dry_run: bool) -> None:
    """Save every script and flow under DIRECTORY that differs from what is saved.

    A script's path is its file's, relative to DIRECTORY, without the extension
    (`etl/clean.py` is `etl/clean`); a flow is any .yaml/.yml/.json file with an `id` and
    `steps`. Scripts are saved first, as flows may call them. Running it twice changes nothing.
    """
    changed = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        script = files.script_of(path, directory)
        if script is not None:
            key, language, code = script
            saved = client.call("GET", f"/scripts/{key}", ok=(404,))
            state = _state(saved.status, saved.body, "code", code)
            if state != "unchanged" and not dry_run:
                _save_script(client, key, language, code, None)
            changed += state != "unchanged"
            click.echo(f"{_verb(state, dry_run):<14} script {key}  ({path})")
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and files.is_flow_file(p)):
        text, data = files.load_flow_text(path)  # a file that does not parse is refused, named
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ValidationError([Problem(str(path), "a flow file needs a string `id`")])
        flow_id = data["id"]
        saved = client.call("GET", f"/flows/{flow_id}", ok=(404,))
        state = _state(saved.status, saved.body, "source", text)
        if state == "changed" and (linked := files.linked_text(data, saved.body["source"])) is not None:
            state = "unchanged" if linked == saved.body["source"] else state  # its subflows pinned as saved
        if not dry_run and state != "new":
            # the API decides: a flow naming subflow files is saved with them pinned, so its
            # saved source is not the file's; 200 means nothing changed
            state = "changed" if files.put_flow_file(client, path).status == 201 else "unchanged"
        elif not dry_run:
            files.put_flow_file(client, path)
        changed += state != "unchanged"
        click.echo(f"{_verb(state, dry_run):<14} flow {flow_id}  ({path})")
    note(f"{changed} change(s){' would be made' if dry_run else ''}")


def _state(status: int, saved: Any, field: str, text: str) -> str:
    if status == 404:
        return "new"
    return "unchanged" if saved[field] == text else "changed"


def _verb(state: str, dry_run: bool) -> str:
    if state == "unchanged":
        return "unchanged"
    return {"new": "would create", "changed": "would update"}[state] if dry_run else \
        {"new": "created", "changed": "updated"}[state]


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


COMMANDS = (flows_group, scripts_group, vars_group, secrets_group, sync_command)
