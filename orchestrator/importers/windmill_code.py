"""Windmill scripts as Millrace code (pure): Python, Bash, TypeScript/JavaScript and PostgreSQL.

What changes: ``wmill.get_variable`` / ``getVariable`` / ``get_resource`` / ``getResource``
calls become parameters of ``main`` that the step fills from a declared variable or secret;
Bash's positional ``$1`` become the named variables Millrace passes; PostgreSQL's ``$1``
become ``%(name)s``; Deno's ``npm:`` specifiers become plain package names.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field

from orchestrator.importers.report import Verdict
from orchestrator.importers.windmill_expressions import Untranslatable

# Windmill's language -> the Millrace step key its code becomes.
STEP_KEYS = {"python3": "python", "bash": "bash", "bun": "typescript", "deno": "typescript",
             "nativets": "typescript", "bunnative": "typescript", "javascript": "javascript",
             "postgresql": "sql"}
# A sync tree's file endings -> Windmill's language (longest first where they overlap).
EXTENSIONS = (
    (".deno.ts", "deno"), (".bun.ts", "bun"), (".fetch.ts", "nativets"), (".native.ts", "nativets"),
    (".pg.sql", "postgresql"), (".my.sql", "mysql"), (".bq.sql", "bigquery"), (".sf.sql", "snowflake"),
    (".ms.sql", "mssql"), (".odb.sql", "oracledb"), (".duckdb.sql", "duckdb"), (".ts", "bun"), (".js", "javascript"),
    (".py", "python3"), (".sh", "bash"), (".go", "go"), (".ps1", "powershell"), (".php", "php"), (".rs", "rust"),
    (".gql", "graphql"), (".cs", "csharp"), (".nu", "nu"), (".java", "java"), (".playbook.yml", "ansible"),
)


@dataclass
class Code:
    """A script's code as Millrace runs it, and what its step must pass to it."""

    key: str  # the step key: python, bash, javascript, typescript, sql
    code: str
    extra: dict[str, str] = field(default_factory=dict)  # added parameter -> ${{ vars.x }} / ${{ secrets.x }}
    notes: list[tuple[Verdict, str]] = field(default_factory=list)


class Variables:
    """Windmill variables and resources as Millrace variables and secrets, by one naming rule;
    remembers every one an import declared, for the report."""

    def __init__(self, secret_paths: frozenset[str] = frozenset(), plain_paths: frozenset[str] = frozenset()):
        self.secret_paths, self.plain_paths = secret_paths, plain_paths
        self.declared: dict[str, str] = {}  # Millrace name -> "variable" or "secret"

    @staticmethod
    def name(path: str) -> str:
        """``f/examples/pg`` -> ``f_examples_pg`` (a variable or secret name)."""
        name = re.sub(r"[^A-Za-z0-9_]", "_", path.strip())
        return ("_" + name if not name or name[0].isdigit() else name)[:100]

    def variable(self, path: str) -> str:
        """Jinja for a Windmill variable: a secret unless the tree says it is not one (Windmill's
        own default is secret)."""
        name = self.name(path)
        kind = "variable" if path in self.plain_paths and path not in self.secret_paths else "secret"
        self.declared[name] = kind
        return f"{'vars' if kind == 'variable' else 'secrets'}.{name}"

    def resource(self, path: str) -> str:
        """Jinja for a Windmill resource: always a secret (resources hold credentials)."""
        name = self.name(path)
        self.declared[name] = "secret"
        return f"secrets.{name}"


def language_of(filename: str) -> str | None:
    """The Windmill language a sync tree's file ending names, or None for no script."""
    return next((language for ending, language in EXTENSIONS if filename.endswith(ending)), None)


def translate_code(language: str, code: str, variables: Variables) -> Code:
    """``code`` in Windmill's ``language`` as Millrace code; raises Untranslatable for a
    language Millrace does not run or code whose Windmill calls have no counterpart."""
    key = STEP_KEYS.get(language)
    if key is None:
        raise Untranslatable(f"Windmill language '{language}' has no Millrace step kind (Millrace runs Python, "
                             "Bash, JavaScript, TypeScript and PostgreSQL)")
    if key == "python":
        return _python(code, variables)
    if key in ("typescript", "javascript"):
        return _script(key, language, code, variables)
    if key == "bash":
        return _bash(code)
    return _postgres(code)


_PY_CALL = re.compile(r"""\bwmill\.(get_variable|get_resource)\(\s*(?:path\s*=\s*)?(["'])([^"'\n]+)\2\s*\)""")
_PY_COMMENT = re.compile(r"(?m)#.*$")
_PY_IMPORT = re.compile(r"(?m)^[ \t]*(?:import wmill|from wmill import [^\n]*)[ \t]*(?:#[^\n]*)?\n?")


def _client_calls(code: str, call: re.Pattern[str], comment: re.Pattern[str],
                  variables: Variables) -> tuple[str, dict[str, str]]:
    """``code`` with each Windmill client call ``call`` matches (outside a comment) replaced by
    a parameter name, and each name's value: the declared variable or secret."""
    spans = [m.span() for m in comment.finditer(code)]
    extra: dict[str, str] = {}

    def replaced(found: re.Match[str]) -> str:
        if any(start <= found.start() < end for start, end in spans):
            return found.group()
        reads_variable = found.group(1) in ("get_variable", "getVariable")
        jinja = variables.variable(found.group(3)) if reads_variable else variables.resource(found.group(3))
        name = jinja.split(".", 1)[1]
        extra[name] = "${{ " + jinja + " }}"
        return name

    return call.sub(replaced, code), extra


def _refuse_other_calls(uncommented: str, translated: str) -> None:
    """Raise Untranslatable when code still uses the Windmill client once its translated calls are gone."""
    if re.search(r"\bwmill\b", uncommented):
        used = re.search(r"\bwmill\.(\w+)", uncommented)
        raise Untranslatable(f"the script calls wmill.{used.group(1) if used else '...'}, which Millrace has no "
                             f"counterpart of (only {translated} with a literal path translate)")


def _python(code: str, variables: Variables) -> Code:
    code, extra = _client_calls(code, _PY_CALL, _PY_COMMENT, variables)
    without_import = _PY_IMPORT.sub("", code)
    _refuse_other_calls(_PY_COMMENT.sub("", without_import), "get_variable and get_resource")
    code = without_import
    if extra:
        code = _python_parameters(code, list(extra))
    notes = [(Verdict.TRANSLATED, f"wmill calls -> main's parameters {', '.join(extra)}")] if extra else []
    return Code("python", code, extra, notes)


def _python_parameters(code: str, names: list[str]) -> str:
    """``code`` with keyword parameters ``names`` (default None) added to ``def main``."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise Untranslatable(f"the Python code does not parse: {exc.msg} (line {exc.lineno})") from None
    main = next((n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "main"),
                None)
    if main is None:
        raise Untranslatable("the Python code defines no top-level `def main(...)`")
    lines = code.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    added = ", ".join(f"{n}=None" for n in names)
    if main.args.kwarg is not None:
        at = offsets[main.args.kwarg.lineno - 1] + main.args.kwarg.col_offset - 2
        return code[:at] + added + ", " + code[at:]
    close = _closing_paren(code, offsets[main.lineno - 1] + main.col_offset)
    before = code[:close].rstrip()
    joiner = "" if before.endswith(("(", ",")) else ", "
    return before + joiner + added + code[close:]


def _closing_paren(code: str, start: int) -> int:
    """The offset of the `)` closing the first `(` at or after ``start``, by Python's tokens."""
    depth, line_starts = 0, [0]
    for line in code.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        at = line_starts[token.start[0] - 1] + token.start[1]
        if at < start or token.type != tokenize.OP:
            continue
        if token.string == "(":
            depth += 1
        elif token.string == ")":
            depth -= 1
            if depth == 0:
                return at
    raise Untranslatable("main's parameter list does not close")


_JS_CALL = re.compile(r"""(?:\bwmill\.)?\b(getVariable|getResource)\(\s*(["'`])([^"'`\n]+)\2\s*\)""")
_JS_CLIENT = re.compile(  # the Windmill client, from npm or deno.land
    r"""(?m)^[ \t]*import\s+[^;\n]*?from\s+["']"""
    r"""(?:(?:npm:)?windmill-client(?:@[^"']*)?|https://deno\.land/x/windmill@[^"']*)["'];?[ \t]*\n?""")
_JS_IMPORT = re.compile(r"""(\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)(["'])([^"'\n]+)\2""", re.M)
_JS_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_JS_MAIN = re.compile(r"\bfunction\s+main\s*(?:<[^>]*>)?\s*\(")


def _script(key: str, language: str, code: str, variables: Variables) -> Code:
    notes: list[tuple[Verdict, str]] = []
    code, extra = _client_calls(code, _JS_CALL, _JS_COMMENT, variables)
    code = _JS_CLIENT.sub("", code)
    uncommented = _JS_COMMENT.sub("", code)
    _refuse_other_calls(uncommented, "getVariable and getResource")
    for runtime in ("Deno", "Bun"):
        if re.search(rf"\b{runtime}\.\w+", uncommented):
            raise Untranslatable(f"the script uses {runtime}'s own API ({runtime}.*); Millrace runs Node.js")

    comments = [m.span() for m in _JS_COMMENT.finditer(code)]

    def specifier(found: re.Match[str]) -> str:
        spec = found.group(3)
        if any(start <= found.start() < end for start, end in comments):
            return found.group()
        if spec.startswith(("http://", "https://")):
            raise Untranslatable(f"the script imports '{spec}' from a URL; Node.js imports npm packages only")
        if spec.startswith("npm:"):
            bare = re.sub(r"^(@?[^@/]+(?:/[^@/]+)?)@[^/]*", r"\1", spec[4:]) if spec[4:].startswith("@") \
                else re.sub(r"^([^@/]+)@[^/]*", r"\1", spec[4:])
            notes.append((Verdict.APPROXIMATED, f"import '{spec}' -> '{bare}': the version is the one locked "
                                                "when the flow is saved"))
            spec = bare
        return f"{found.group(1)}{found.group(2)}{spec}{found.group(2)}"

    code = _JS_IMPORT.sub(specifier, code)
    if _JS_MAIN.search(code):
        code = _without_parameter_comments(code)
    if extra:
        code = _js_parameters(code, [f"{n}?: any" if key == "typescript" else n for n in extra])
        notes.append((Verdict.TRANSLATED, f"wmill calls -> main's parameters {', '.join(extra)}"))
    if language in ("deno", "bunnative", "nativets") and key == "typescript":
        notes.append((Verdict.APPROXIMATED, f"{language} TypeScript runs on Node.js, transpiled when saved"))
    return Code(key, code, extra, notes)


def _main_span(code: str) -> tuple[int, int]:
    """Where main's parameter list is: from after its `(` to its closing `)`."""
    found = _JS_MAIN.search(code)
    if found is None:
        raise Untranslatable("the script defines no `function main(...)`")
    depth, at, quote = 1, found.end(), ""
    while at < len(code) and depth:
        char = code[at]
        if quote:
            quote = "" if char == quote and code[at - 1] != "\\" else quote
        elif code.startswith(("//", "/*"), at):
            end = code.find("\n" if code[at + 1] == "/" else "*/", at + 2)
            at = len(code) if end < 0 else end
            continue
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        at += 1
    if depth:
        raise Untranslatable("main's parameter list does not close")
    return found.end(), at - 1


def _without_parameter_comments(code: str) -> str:
    """Comments inside main's parameter list (Windmill's templates comment out parameters)
    removed: Millrace reads the parameters by name from that list."""
    start, close = _main_span(code)
    return code[:start] + _JS_COMMENT.sub("", code[start:close]) + code[close:]


def _js_parameters(code: str, params: list[str]) -> str:
    _, close = _main_span(code)
    before = code[:close].rstrip()
    joiner = "" if before.endswith(("(", ",")) else ", "
    return before + joiner + ", ".join(params) + code[close:]


_BASH_POSITIONAL = re.compile(r'(?m)^([ \t]*)([A-Za-z_][A-Za-z0-9_]*)=("?)\$(?:(\d)|\{(\d+)\})\3[ \t]*$\n?')
_BASH_DEFAULTED = re.compile(r'(?m)^([ \t]*)([A-Za-z_][A-Za-z0-9_]*)=("?)\$\{(\d+):?-([^}\n]*)\}\3[ \t]*$')


def _bash(code: str) -> Code:
    """Windmill passes Bash its arguments by position (``name="$1"``); Millrace by name."""
    names: dict[str, str] = {}

    def plain(found: re.Match[str]) -> str:
        names[found.group(4) or found.group(5)] = found.group(2)
        return ""

    def defaulted(found: re.Match[str]) -> str:
        names[found.group(4)] = found.group(2)
        return f'{found.group(1)}: "${{{found.group(2)}:={found.group(5)}}}"'

    code = _BASH_POSITIONAL.sub(plain, _BASH_DEFAULTED.sub(defaulted, code))

    def positional(found: re.Match[str]) -> str:
        number = found.group(1) or found.group(2)
        if number not in names:
            raise Untranslatable(f"the Bash script reads ${number}, which no `name=\"${number}\"` line names")
        return "${" + names[number] + "}"

    code = re.sub(r"\$(?:([1-9])|\{([1-9][0-9]*)\})", positional, code)
    if re.search(r"\$[@*#]", code):
        raise Untranslatable("the Bash script reads its arguments as a list ($@, $* or $#); Millrace passes them "
                             "by name")
    notes = [(Verdict.TRANSLATED, f"positional arguments -> variables {', '.join(names.values())}")] if names else []
    return Code("bash", code, {}, notes)


_PG_NAME = re.compile(r"(?m)^--\s*\$(\d+)\s+([A-Za-z_][A-Za-z0-9_]*)")


def _postgres(code: str) -> Code:
    """``$1`` with a ``-- $1 name`` comment -> ``%(name)s``; ``%`` doubled (psycopg's escape)."""
    names = {number: name for number, name in _PG_NAME.findall(code)}
    out, at = [], 0
    for found in re.finditer(r"'(?:[^']|'')*'|\"(?:[^\"])*\"|--[^\n]*|\$\$|\$(\d+)|%", code):
        out.append(code[at:found.start()])
        text, number = found.group(), found.group(1)
        if number is not None:
            if number not in names:
                raise Untranslatable(f"${number} has no `-- ${number} name` comment naming it")
            text = f"%({names[number]})s"
        elif text.startswith(("'", '"', "--")) or text == "%":
            text = text.replace("%", "%%")
        elif text == "$$":
            raise Untranslatable("dollar-quoted text ($$...$$) in the statement; write it with single quotes")
        out.append(text)
        at = found.end()
    out.append(code[at:])
    notes = [(Verdict.APPROXIMATED, "PostgreSQL: the result is {rows: [...], row_count, ...} where Windmill's "
                                    "is the list of rows; references read .rows")]
    if names:
        notes.append((Verdict.TRANSLATED, f"$N parameters -> {', '.join(f'%({n})s' for n in names.values())}"))
    return Code("sql", "".join(out), {}, notes)
