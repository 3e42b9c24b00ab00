"""Long-running processes: ``up`` (all of them), ``worker``, ``api``, ``scheduler``, ``listener`` and ``flower``."""
from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from config.settings import Settings, load_settings
from orchestrator.cli.output import note

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@click.command("worker")
@click.option("-Q", "--queues", default=None, help="comma-separated (default: the default queue)")
@click.option("-c", "--concurrency", type=int, default=None, help="processes running steps (default: CPUs)")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("-n", "--hostname", default=None, help="its node name (default: celery@<host name>)")
def worker_command(queues: str | None, concurrency: int | None, loglevel: str, hostname: str | None) -> None:
    """A Celery worker: runs steps."""
    from tasks import app

    argv = ["worker", f"--loglevel={loglevel}"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    if queues:
        argv.append(f"--queues={queues}")
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)


@click.command("flower")
@click.option("--port", type=int, default=None, help="default: MILLRACE_FLOWER_PORT or 5555")
@click.option("--address", default=None, help="default: MILLRACE_FLOWER_ADDRESS or 127.0.0.1")
def flower_command(port: int | None, address: str | None) -> None:
    """Flower, the Celery monitor, on this broker (basic auth: MILLRACE_FLOWER_BASIC_AUTH)."""
    settings = load_settings()
    if not settings.flower_basic_auth:
        raise click.ClickException("set MILLRACE_FLOWER_BASIC_AUTH=user:password: Flower shows every task's arguments")
    from tasks import app

    app.start(["flower", f"--address={address or settings.flower_address}",
               f"--port={port or settings.flower_port}", f"--basic-auth={settings.flower_basic_auth}",
               "--persistent=False", "--purge_offline_workers=60",
               # args is `flow / run / step path`: the column that says what a task is doing
               "--tasks_columns=name,args,state,received,started,runtime,worker,uuid"])


@click.command("scheduler")
@click.option("--loglevel", default="INFO", show_default=True)
def scheduler_command(loglevel: str) -> None:
    """Fire cron schedules (run two for availability: one leads)."""
    from tasks.scheduler import run_scheduler

    run_scheduler(loglevel)


@click.command("listener")
@click.option("--loglevel", default="INFO", show_default=True)
def listener_command(loglevel: str) -> None:
    """Consume the flows' event triggers: amqp, mqtt, nats, redis, postgres (run two: one leads)."""
    import logging

    from orchestrator.cli.wiring import engine_for, publisher_for
    from orchestrator.listeners.process import run_listener

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    run_listener(settings, publisher_for(engine_for(settings)))


@click.command("api")
@click.option("--port", type=int, default=None, help="default: MILLRACE_API_PORT or 8080")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--workers", type=int, default=2, show_default=True, help="gunicorn worker processes")
@click.option("--dev", is_flag=True, help="Flask's development server, one process")
def api_command(port: int | None, host: str, workers: int, dev: bool) -> None:
    """Serve the HTTP API with gunicorn."""
    from orchestrator.cli.wiring import api_app

    port = port or load_settings().api_port
    if dev:
        import logging

        from api.access_log import RedactingFilter

        logging.getLogger("werkzeug").addFilter(RedactingFilter())
        api_app().run(host=host, port=port)
        return
    from gunicorn.app.wsgiapp import WSGIApplication

    # threaded workers, a timeout above the longest ?wait, the redacting access log
    sys.argv = ["millrace-api", "--config", "python:api.gunicorn_settings", "--workers", str(workers),
                "--bind", f"{host}:{port}", "api.wsgi:app"]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()


@click.command("up")
@click.option("--port", type=int, default=None, help="the API's (default: MILLRACE_API_PORT or 8080)")
@click.option("--workers", type=int, default=1, show_default=True, help="worker processes to start")
@click.option("--concurrency", type=int, default=2, show_default=True, help="steps each worker runs at once")
@click.option("--no-examples", is_flag=True, help="do not load the examples on first start")
def up_command(port: int | None, workers: int, concurrency: int, no_examples: bool) -> int:
    """Everything in the foreground: the API, workers, the scheduler, the listener and Flower, in one log.

    Local mode (SQLite and a file-system broker under MILLRACE_HOME) unless
    MILLRACE_DATABASE_URL / MILLRACE_BROKER_URL are set. Ctrl-C stops it all."""
    from orchestrator.cli.wiring import UP_FILE, engine_for

    settings = load_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine_for(settings)  # local mode: the SQLite file made and brought up to date; else: the schema checked
    credentials, first = _credentials(settings)
    port = port or settings.api_port
    env = {**os.environ, "MILLRACE_HOME": str(settings.home), "PYTHONUNBUFFERED": "1"}
    if not settings.flower_basic_auth:
        env["MILLRACE_FLOWER_BASIC_AUTH"] = credentials["flower"]
    me = [sys.executable, "-m", "orchestrator.cli"]
    wanted = [("api", [*me, "api", "--port", str(port), "--workers", "1"])]
    wanted += [(f"worker{i + 1}" if workers > 1 else "worker",
                [*me, "worker", "-c", str(concurrency), "--loglevel", "WARNING"]) for i in range(workers)]
    wanted += [("scheduler", [*me, "scheduler", "--loglevel", "WARNING"]),
               ("listener", [*me, "listener", "--loglevel", "WARNING"]),
               ("flower", [*me, "flower", "--port", str(settings.flower_port)])]
    group = _Group(env)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal closed
        signal.signal(sig, lambda *_: stop.set())
    try:
        for name, argv in wanted:
            group.start(name, argv)
        UP_FILE(settings).write_text(json.dumps({"pid": os.getpid(), "workers": group.pids("worker")}))
        api = f"http://127.0.0.1:{port}"
        if not _wait_ready(api, group, stop):
            return 1
        if first and not no_examples:
            _load_examples(api, credentials["admin_token"])
        _welcome(settings, api, credentials, first)
        while not stop.is_set():
            if (gone := group.exited()) is not None:
                note(f"{gone} stopped; stopping the rest")
                return 1
            stop.wait(0.5)
        note("stopping...")
        return 0
    finally:
        group.stop()
        UP_FILE(settings).unlink(missing_ok=True)


def _credentials(settings: Settings) -> tuple[dict[str, str], bool]:
    """The admin token and Flower's login `up` made on its first start (kept, mode 0600)."""
    from orchestrator.cli.wiring import engine_for
    from orchestrator.store.access import Role, create_token

    path = settings.home / "credentials.json"
    if path.exists():
        return json.loads(path.read_text()), False
    token = create_token(engine_for(settings), "up-admin", Role.ADMIN, actor="millrace up")
    made = {"admin_token": token, "flower": f"admin:{secrets.token_urlsafe(12)}"}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(made, out)
    return made, True


def _welcome(settings: Settings, api: str, credentials: dict[str, str], first: bool) -> None:
    lines = [f"Millrace is up ({'local mode: ' + str(settings.home) if settings.local else 'PostgreSQL and RabbitMQ'})",
             f"  API        {api}/api/v1  (docs: {api}/api/v1/docs)"]
    lines.append(f"  Flower     http://127.0.0.1:{settings.flower_port}")
    if first:
        lines += [f"  admin token {credentials['admin_token']}", f"  Flower login {credentials['flower']}",
                  f"  shown this once; kept in {settings.home / 'credentials.json'} (readable by you only)"]
    else:
        lines.append(f"  the admin token and Flower login are in {settings.home / 'credentials.json'}")
    lines.append("  try: millrace run examples/hello.yaml -i name=ada      Ctrl-C stops everything")
    note("\n".join(lines))


def _load_examples(api: str, token: str) -> None:
    from orchestrator.cli import files
    from orchestrator.cli.client import Client

    client = Client(api, token)
    for path in sorted((EXAMPLES / "scripts").glob("*")):  # examples/scripts/shout.py is examples/shout
        language = files.SCRIPT_LANGUAGES.get(path.suffix)
        if language:
            client.call("PUT", f"/scripts/examples/{path.stem}", json_body={
                "language": language, "code": path.read_text(encoding="utf-8")})
    for path in sorted(EXAMPLES.glob("*.yaml")):
        try:
            files.save_flow_file(client, path)
        except Exception as exc:  # an example that cannot load is said, and the rest load
            note(f"example {path.name} not loaded: {exc}")
    note(f"loaded the examples from {EXAMPLES}")


def _wait_ready(api: str, group: _Group, stop: threading.Event, timeout: float = 60) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if (gone := group.exited()) is not None:
            note(f"{gone} stopped before the API answered")
            return False
        try:
            with urllib.request.urlopen(f"{api}/healthz", timeout=1) as answer:  # noqa: S310 - our own URL
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    note("the API did not answer in time" if not stop.is_set() else "stopped")
    return False


class _Group:
    """Child processes, each in its own process group, their output interleaved and prefixed."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.children: dict[str, subprocess.Popen] = {}
        self.width = 9

    def start(self, name: str, argv: list[str]) -> None:
        child = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=_die_with_parent)
        self.children[name] = child
        threading.Thread(target=self._relay, args=(name, child), daemon=True).start()

    def _relay(self, name: str, child: subprocess.Popen) -> None:
        assert child.stdout is not None
        colour = ("cyan", "green", "magenta", "yellow", "blue")[len(self.children) % 5]
        prefix = click.style(f"{name:<{self.width}}|", fg=colour) if sys.stderr.isatty() else f"{name:<{self.width}}|"
        for raw in iter(child.stdout.readline, b""):
            click.echo(f"{prefix} {raw.decode('utf-8', 'replace').rstrip()}", err=True)

    def pids(self, prefix: str) -> list[int]:
        return [c.pid for name, c in self.children.items() if name.startswith(prefix)]

    def exited(self) -> str | None:
        return next((name for name, c in self.children.items() if c.poll() is not None), None)

    def stop(self) -> None:
        # every group, whether its leader is alive or not: a pool's processes outlive a dead leader
        for child in self.children.values():
            _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for child in self.children.values():
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass  # nothing of that group is left


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls it


def _die_with_parent() -> None:
    """In a child of `up`, between fork and exec: SIGTERM when `up` dies, however it dies
    (SIGKILL included), so that nothing of it outlives it."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


COMMANDS = (up_command, worker_command, api_command, scheduler_command, listener_command, flower_command)
