"""Settings read from MILLRACE_* once: a bad value stops the process with a message naming it."""
from __future__ import annotations

import pytest

from config.settings import load_settings


def test_a_batch_time_is_seconds_capped_below_the_time_limit_margin() -> None:
    assert load_settings({}).batch_seconds == 5.0
    assert load_settings({"MILLRACE_STEP_BATCH_S": "0"}).batch_seconds == 0.0
    assert load_settings({"MILLRACE_STEP_BATCH_S": "0.25"}).batch_seconds == 0.25
    assert load_settings({"MILLRACE_STEP_BATCH_S": "3600"}).batch_seconds == 50.0


@pytest.mark.parametrize(("name", "value", "says"), [
    ("MILLRACE_STEP_BATCH_S", "soon", "MILLRACE_STEP_BATCH_S must be a number, got 'soon'"),
    ("MILLRACE_STEP_BATCH_S", "-1", "MILLRACE_STEP_BATCH_S must be a number of seconds >= 0, got '-1'"),
    ("MILLRACE_STEP_BATCH_S", "nan", "MILLRACE_STEP_BATCH_S must be a number of seconds >= 0, got 'nan'"),
    ("MILLRACE_TASK_TIME_LIMIT", "25m", "MILLRACE_TASK_TIME_LIMIT must be an integer, got '25m'"),
])
def test_a_bad_value_names_the_setting(name: str, value: str, says: str) -> None:
    with pytest.raises(SystemExit, match=says.replace(".", r"\.")):
        load_settings({name: value})


def test_a_queue_prefix_begins_every_name_a_broker_shares() -> None:
    from celery import Celery

    from config.celery import celery_config

    settings = load_settings({"MILLRACE_QUEUE_PREFIX": "ci7.", "MILLRACE_DEFAULT_QUEUE": "work",
                              "MILLRACE_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"})
    assert (settings.queue_prefix, settings.default_queue) == ("ci7.", "ci7.work")
    # what Celery makes of it, not only what we hand it: no connection is opened for this
    app = Celery("prefixed", set_as_current=False)
    app.config_from_object(celery_config(settings))
    queue = app.amqp.default_queue
    assert (queue.name, queue.exchange.name, queue.routing_key) == ("ci7.work",) * 3
    assert app.control.mailbox.exchange.name == "ci7.celery.pidbox"
    assert app.control.mailbox.reply_exchange.name == "reply.ci7.celery.pidbox"
    assert (app.conf.event_exchange, app.conf.event_queue_prefix) == ("ci7.celeryev", "ci7.celeryev")


def test_without_a_queue_prefix_the_names_are_celerys_own() -> None:
    from config.celery import celery_config

    # a broker URL: the file-system broker of local mode would make its folder
    settings = load_settings({"MILLRACE_DEFAULT_QUEUE": "work", "MILLRACE_BROKER_URL": "amqp://127.0.0.1//"})
    config = celery_config(settings)
    assert (settings.queue_prefix, config["task_default_queue"]) == ("", "work")
    assert (config["control_exchange"], config["event_exchange"]) == ("celery", "celeryev")


@pytest.mark.parametrize("prefix", ["two words", "ci/7", "amq.mine"])
def test_a_queue_prefix_rabbitmq_would_refuse_is_refused(prefix: str) -> None:
    with pytest.raises(SystemExit, match="MILLRACE_QUEUE_PREFIX may hold letters"):
        load_settings({"MILLRACE_QUEUE_PREFIX": prefix})


def test_approval_links_take_the_public_url_and_their_lifetime_from_the_environment() -> None:
    settings = load_settings({"MILLRACE_PUBLIC_URL": "https://millrace.example.com/",
                              "MILLRACE_APPROVAL_LINK_TTL_S": "3600"})
    assert settings.public_url == "https://millrace.example.com"
    assert settings.approval_link_ttl == 3600.0
    assert load_settings({}).approval_link_ttl == 7 * 86400.0


def test_runs_are_kept_forever_unless_a_retention_is_set() -> None:
    assert load_settings({}).retention is None
    assert load_settings({"MILLRACE_RETENTION": "forever"}).retention is None
    assert load_settings({"MILLRACE_RETENTION": "30d"}).retention == 30 * 86400.0
    assert load_settings({"MILLRACE_RETENTION": "12h"}).retention == 12 * 3600.0
    assert load_settings({"MILLRACE_RETENTION": "3600"}).retention == 3600.0
    assert load_settings({}).idempotency_window == 86400.0
    assert load_settings({}).retention_batch == 500


def test_audit_events_are_kept_forever_unless_their_own_retention_is_set() -> None:
    assert load_settings({"MILLRACE_RETENTION": "30d"}).audit_retention is None
    assert load_settings({"MILLRACE_AUDIT_RETENTION": "400d"}).audit_retention == 400 * 86400.0
    assert load_settings({"MILLRACE_AUDIT_RETENTION": "forever"}).audit_retention is None


@pytest.mark.parametrize("value", ["a month", "0d", "-3d", "30 days"])
@pytest.mark.parametrize("name", ["MILLRACE_RETENTION", "MILLRACE_AUDIT_RETENTION"])
def test_a_retention_that_is_no_duration_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SystemExit, match=f"{name} must be a duration like 30d"):
        load_settings({name: value})


def test_quorum_queues_are_declared_quorum_without_priorities_on_exchanges_delays_can_reach() -> None:
    from celery import Celery

    from config.celery import celery_config

    settings = load_settings({"MILLRACE_QUEUE_TYPE": "Quorum", "MILLRACE_QUEUE_PREFIX": "ci7.",
                              "MILLRACE_QUEUE_MAX_PRIORITY": "9", "MILLRACE_BROKER_URL": "amqp://127.0.0.1//"})
    assert (settings.queue_type, settings.queue_max_priority) == ("quorum", 0)
    app = Celery("quorum", set_as_current=False)
    app.config_from_object(celery_config(settings))
    default, named = app.amqp.queues["ci7.millrace"], app.amqp.queues["gpu"]  # a queue a step names
    for queue in (default, named):
        assert queue.queue_arguments == {"x-queue-type": "quorum"}  # no x-max-priority: refused on quorum
        assert queue.exchange.type == "topic"  # native delayed delivery cannot bind a direct exchange
    # no dot: the shared delay exchange routes on the key's last words
    assert (default.exchange.name, default.routing_key) == ("ci7.millrace", "ci7_millrace")
    assert app.conf.worker_detect_quorum_queues and app.conf.broker_native_delayed_delivery_queue_type == "quorum"


def test_classic_queues_keep_their_priorities_and_direct_exchanges() -> None:
    from celery import Celery

    from config.celery import celery_config

    settings = load_settings({"MILLRACE_BROKER_URL": "amqp://127.0.0.1//"})
    assert (settings.queue_type, settings.queue_max_priority) == ("classic", 9)
    app = Celery("classic", set_as_current=False)
    app.config_from_object(celery_config(settings))
    queue = app.amqp.queues["millrace"]
    assert (queue.queue_arguments, queue.exchange.type) == ({"x-max-priority": 9}, "direct")


def test_an_unknown_queue_type_is_refused_naming_the_setting() -> None:
    with pytest.raises(SystemExit, match="MILLRACE_QUEUE_TYPE must be one of classic, quorum, got 'stream'"):
        load_settings({"MILLRACE_QUEUE_TYPE": "stream"})
