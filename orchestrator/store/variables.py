"""Variables and secrets: named values flows read as ``vars.x`` and ``secrets.x``.

Secrets are encrypted at rest with Fernet (keys from ``MILLRACE_SECRET_KEY``, comma-separated:
the first encrypts, every one decrypts, so keys rotate), never returned after being set,
and masked wherever a step's output is recorded.
"""
from __future__ import annotations

import json
import re
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Engine, delete, select

from orchestrator.errors import ExpressionError, FlowError, NotFound, Problem, ValidationError
from orchestrator.store.audit import audit
from orchestrator.store.models import Variable
from orchestrator.store.sql import dialect_insert, now

variables = Variable.__table__
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MASK = "***"


def cipher(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise FlowError("MILLRACE_SECRET_KEY is not set: secrets cannot be stored or read")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise FlowError("MILLRACE_SECRET_KEY holds a key that is not a Fernet key") from None


def set_variable(engine: Engine, name: str, value: Any, *, secret: bool, keys: tuple[str, ...],
                 actor: str) -> None:
    if not NAME.match(name):
        raise ValidationError([Problem("name", f"'{name}' is not a valid name (letters, digits, _)")])
    row = {"name": name, "secret": secret, "updated_at": now(), "value": None, "ciphertext": None}
    if secret:
        row["ciphertext"] = cipher(keys).encrypt(json.dumps(value).encode()).decode()
    else:
        row["value"] = value
    stmt = dialect_insert(engine, variables).values(**row)
    stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={k: v for k, v in row.items() if k != "name"})
    with engine.begin() as conn:
        conn.execute(stmt)
        audit(conn, actor, "secret.set" if secret else "variable.set", f"{'secret' if secret else 'var'}:{name}")


def delete_variable(engine: Engine, name: str, actor: str) -> None:
    with engine.begin() as conn:
        if not conn.execute(delete(variables).where(variables.c.name == name)).rowcount:
            raise NotFound(f"no variable or secret named '{name}'")
        audit(conn, actor, "variable.deleted", f"var:{name}")


def list_variables(engine: Engine, *, after: str = "", limit: int | None = None) -> list[dict[str, Any]]:
    """Variables with their values and secrets without, by name, ``limit`` after ``after``."""
    return _rows(engine, variables.c.name > after, limit=limit)


def get_variable(engine: Engine, name: str) -> dict[str, Any]:
    found = _rows(engine, variables.c.name == name)
    if not found:
        raise NotFound(f"no variable or secret named '{name}'")
    return found[0]


def _rows(engine: Engine, *where: Any, limit: int | None = None) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(variables.c.name, variables.c.secret, variables.c.value, variables.c.updated_at)
                            .where(*where).order_by(variables.c.name).limit(limit)).mappings()
        return [{"name": r["name"], "secret": r["secret"], "value": None if r["secret"] else r["value"],
                 "updated_at": r["updated_at"]} for r in rows]


def resolve(engine: Engine, keys: tuple[str, ...], var_names: frozenset[str],
            secret_names: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The values of the named variables and secrets, decrypted; a missing one is an error."""
    wanted = var_names | secret_names
    with engine.connect() as conn:
        rows = {r.name: r for r in conn.execute(select(variables).where(variables.c.name.in_(wanted)))}
    found_vars: dict[str, Any] = {}
    found_secrets: dict[str, Any] = {}
    for name in sorted(var_names):
        row = rows.get(name)
        if row is None or row.secret:
            raise ExpressionError(f"variable '{name}' is not defined")
        found_vars[name] = row.value
    for name in sorted(secret_names):
        row = rows.get(name)
        if row is None or not row.secret:
            raise ExpressionError(f"secret '{name}' is not defined")
        try:
            found_secrets[name] = json.loads(cipher(keys).decrypt(row.ciphertext.encode()))
        except InvalidToken:
            raise ExpressionError(f"secret '{name}' cannot be decrypted with the configured keys") from None
    return found_vars, found_secrets


def mask(value: Any, secrets: dict[str, Any]) -> Any:
    """``value`` with every secret's text replaced by ***, inside strings, lists and mappings."""
    texts = sorted({s if isinstance(s, str) else json.dumps(s) for s in secrets.values()}, key=len, reverse=True)
    texts = [t for t in texts if len(t) >= 3]  # shorter ones would mask ordinary text
    if not texts:
        return value
    return _mask(value, texts)


def _mask(value: Any, texts: list[str]) -> Any:
    if isinstance(value, str):
        for text in texts:
            value = value.replace(text, MASK)
        return value
    if isinstance(value, list):
        return [_mask(v, texts) for v in value]
    if isinstance(value, dict):  # keys too: a secret used as a key is still the secret
        return {_mask(k, texts): _mask(v, texts) for k, v in value.items()}
    return value
