#!/usr/bin/env bash
# Runs Millrace's tests on this machine: makes the venv, installs the project, makes sure
# PostgreSQL, RabbitMQ, Redis, Mosquitto and NATS answer (starting the local services when
# they are down), then pytest.
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

# The event triggers' tests talk to Redis, Mosquitto (MQTT) and NATS with JetStream as well.
port_up() { .venv/bin/python -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2).close()" "$1"; }
if ! port_up 6379 && command -v redis-server >/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' >/dev/null || true
fi
if ! port_up 1883 && command -v mosquitto >/dev/null; then
  mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
fi
if ! port_up 4222 && command -v nats-server >/dev/null; then
  mkdir -p /var/lib/nats-server
  (setsid nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log &) || true
fi
wait_for Redis port_up 6379
wait_for Mosquitto port_up 1883
wait_for NATS port_up 4222

exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
