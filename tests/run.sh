#!/usr/bin/env bash
# Runs Millrace's tests on this machine: makes the venv, installs the project, makes sure
# PostgreSQL and RabbitMQ answer (starting the local services when they are down), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

# The step sandbox needs bubblewrap (and setpriv, from util-linux); a worker refuses to start without it.
if ! command -v bwrap >/dev/null && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null || echo "could not install bubblewrap" >&2
fi
# docker/compose.yaml is checked with a compose parser (no Docker engine runs here).
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1 && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq docker-compose) >/dev/null || echo "could not install docker-compose" >&2
fi

wait_for() {  # name, check command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "$name is not reachable" >&2
  return 1
}

pg_up() { .venv/bin/python -c "import psycopg; psycopg.connect('postgresql://postgres@127.0.0.1:5432/postgres', connect_timeout=2).close()"; }
amqp_up() { .venv/bin/python -c "import kombu; c = kombu.Connection('amqp://guest:guest@127.0.0.1:5672//', connect_timeout=2); c.connect(); c.release()"; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_for PostgreSQL pg_up
fi
if ! amqp_up; then
  if command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached || true
  fi
  wait_for RabbitMQ amqp_up
fi

exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
