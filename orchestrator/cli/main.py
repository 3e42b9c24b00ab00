"""``millrace``: the command line, on click (it comes with Celery; completion, help and
option parsing for free). The commands live in ``orchestrator.cli.commands``, a module per
group; requests go through ``orchestrator.cli.client`` (the HTTP API, remote or in this
process); what wires the parts together lives in ``orchestrator.cli.wiring``.

Exit codes: 0 done (a run succeeded), 1 a run failed, 2 the request was refused or invalid,
3 a run was still going when ``--timeout`` ran out, 4 a run was cancelled, 130 interrupted
(Ctrl-C; a run started goes on).
"""
from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

import click
from sqlalchemy.exc import DBAPIError, OperationalError

from orchestrator.cli.client import Client, Refused
from orchestrator.cli.output import EXIT_INTERRUPTED, EXIT_REFUSED
from orchestrator.errors import FlowError, ValidationError


def _version() -> str:
    try:
        return version("millrace")
    except PackageNotFoundError:
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_version(), "--version", prog_name="millrace")
@click.option("--url", envvar="MILLRACE_API_URL", default=None, metavar="URL",
              help="a Millrace API to act on (env MILLRACE_API_URL); default: the configured database, here")
@click.option("--token", envvar="MILLRACE_TOKEN", default=None, metavar="TOKEN",
              help="the API token for --url (env MILLRACE_TOKEN)")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Workflow orchestration on Celery: flows of Python, Bash, JavaScript, TypeScript and SQL steps."""
    ctx.obj = Client(url, token)


def _register() -> None:
    from orchestrator.cli.commands import admin, bench, definitions, imports, runs, serve

    for module in (runs, definitions, serve, admin, bench, imports):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv``; returns the exit code (see the module's docstring)."""
    try:
        code = cli.main(args=argv, prog_name="millrace", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except ValidationError as exc:
        click.echo("invalid:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        return EXIT_REFUSED
    except Refused as exc:
        click.echo(f"refused ({exc.status}): {exc}", err=True)
        return EXIT_REFUSED
    except FlowError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_REFUSED
    except OperationalError as exc:
        click.echo(f"error: the database is unreachable: {exc.orig}", err=True)
        return EXIT_REFUSED
    except DBAPIError as exc:
        click.echo(f"error: the database refused a request: {exc.orig}", err=True)
        return EXIT_REFUSED
    except SystemExit as exc:
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
            return EXIT_REFUSED
        return exc.code or 0
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
