"""docker/: no Docker engine runs here, so what can be checked is: the compose file with a
compose parser, the Dockerfile with hadolint, and each service's command, environment and
healthcheck run as local processes against private services, in the order compose would
start them (the migrations first, waiting for a database that is not up yet)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
COMPOSE = ROOT / "docker" / "compose.yaml"
BIN = Path(sys.executable).parent
SECRETS = {"MILLRACE_SECRET_KEY": "zT5cQ2H3uJ8GZbqL9cW1mA4vN7xY0kE6rP2sD5fG8hI=",
           "MILLRACE_FLOWER_BASIC_AUTH": "admin:compose-test"}


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        argv = ["docker", "compose", "-f", str(COMPOSE), "config"]
    elif shutil.which("docker-compose"):
        argv = ["docker-compose", "-f", str(COMPOSE), "config"]
    else:
        pytest.fail("no compose parser: apt-get install docker-compose (tests/run.sh does)")
    return subprocess.run(argv, cwd=COMPOSE.parent, env={"PATH": os.environ["PATH"], **env}, capture_output=True,
                          text=True)


def test_the_compose_file_parses_and_refuses_to_start_without_its_secrets() -> None:
    parsed = _compose_config(SECRETS)
    assert parsed.returncode == 0, parsed.stderr
    services = yaml.safe_load(parsed.stdout)["services"]
    assert set(services) == {"rabbitmq", "postgres", "migrate", "worker", "api", "scheduler", "listener",
                             "flower"}
    built = [name for name, s in services.items() if "build" in s]
    assert built == ["migrate"]  # one image, built once
    ours = {s.get("image") for name, s in services.items() if name not in ("rabbitmq", "postgres")}
    assert ours == {"millrace:local"}
    for name in ("worker", "api", "scheduler", "listener", "flower", "rabbitmq", "postgres"):
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("worker", "api", "flower", "postgres", "rabbitmq"):
        assert "healthcheck" in services[name], name
    assert services["migrate"]["restart"] == "on-failure"
    assert "-h" in services["postgres"]["healthcheck"]["test"]  # over TCP, not the socket
    missing = _compose_config({})
    assert missing.returncode != 0 and "MILLRACE_SECRET_KEY" in missing.stderr


def test_the_dockerfile_passes_hadolint_and_the_context_leaves_out_what_it_does_not_copy() -> None:
    linted = subprocess.run([str(BIN / "hadolint"), str(ROOT / "docker" / "Dockerfile")], capture_output=True,
                            text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".millrace", "tests"} <= set(ignored)
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert text.index("requirements.txt") < text.index("COPY orchestrator")  # the dependency layer comes first


def _env_for(service: dict, pg_port: int, rabbit_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLRACE_")}
    for key, value in (service.get("environment") or {}).items():
        value = str(value)
        value = value.replace("@postgres:5432", f"@127.0.0.1:{pg_port}")
        value = value.replace("amqp://guest:guest@rabbitmq:5672//", rabbit_url)
        env[key] = value
    env.update(SECRETS)
    env["MILLRACE_HOME"] = str(home)
    env["MILLRACE_QUEUE_PREFIX"] = os.environ.get("MILLRACE_QUEUE_PREFIX", "")  # the session's, to clean up
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return env


def _argv(command: list) -> list[str]:
    return [str(BIN / "millrace") if part == "millrace" else str(part) for part in command]


def _healthy(check: dict, env: dict[str, str], timeout: float = 90) -> None:
    test = check["test"]
    argv = ["sh", "-c", test[1].replace("$$", "$")] if test[0] == "CMD-SHELL" else [
        str(BIN / part) if (BIN / part).exists() else part for part in test[1:]]
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(argv, env={**env, "HOSTNAME": env.get("HOSTNAME", "")}, capture_output=True, text=True,
                              timeout=60)
        if done.returncode == 0:
            return
        assert time.monotonic() < deadline, (argv, done.stdout[-1000:], done.stderr[-1000:])
        time.sleep(1)


def test_each_service_starts_as_compose_would_and_answers_its_healthcheck(private_postgres, private_rabbit,
                                                                           tmp_path) -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    compose_url = private_postgres.create_database("compose")  # the service's URL, pointed at the private cluster
    pg_port = private_postgres.port
    started: list[subprocess.Popen] = []
    try:
        # migrate first, before the database answers: it waits, then migrates
        private_postgres.stop()
        migrate_env = _env_for(services["migrate"], pg_port, private_rabbit.url, tmp_path / "migrate")
        migrate_env["MILLRACE_DATABASE_URL"] = compose_url
        migrate = subprocess.Popen(_argv(services["migrate"]["command"]), cwd=ROOT, env=migrate_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Timer(4, private_postgres.start).start()
        out, _ = migrate.communicate(timeout=120)
        assert migrate.returncode == 0, out
        assert "waiting for the database" in out and "database schema is up to date" in out
        for name in ("worker", "api", "scheduler", "listener", "flower"):
            service = services[name]
            env = _env_for(service, pg_port, private_rabbit.url, tmp_path / name)
            env["MILLRACE_DATABASE_URL"] = compose_url
            env["HOSTNAME"] = f"compose-{name}"
            argv = _argv(service["command"])
            if name == "worker":
                argv += ["--hostname", "celery@compose-worker"]  # the name its healthcheck pings
            if name == "api":
                argv[argv.index("--workers") + 1] = "1"
            log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            started.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True))
            if "healthcheck" in service:
                try:
                    _healthy(service["healthcheck"], env)
                except AssertionError:
                    raise AssertionError(f"{name}: {(tmp_path / f'{name}.log').read_text()[-3000:]}") from None
        time.sleep(2)  # the services without a healthcheck (scheduler, listener) had time to fail on start
        for name, proc in zip(("worker", "api", "scheduler", "listener", "flower"), started, strict=True):
            assert proc.poll() is None, f"{name} exited: {(tmp_path / f'{name}.log').read_text()[-3000:]}"
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
