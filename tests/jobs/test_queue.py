"""The Celery configuration shared by the API and the workers."""
from jobs.embedded_broker import Transport as EmbeddedTransport
from jobs.queue import make_celery
from jobs.settings import load_settings


def test_embedded_broker_uses_the_faster_polling_transport(tmp_path):
    app = make_celery(load_settings(data_dir=tmp_path))
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, EmbeddedTransport)
        assert connection.transport.polling_interval <= 0.1
        assert connection.as_uri().startswith("sqlite:///")


def test_redis_broker_gets_a_visibility_timeout_above_the_hard_limit():
    conf = make_celery(load_settings(broker_url="redis://127.0.0.1:6379/13")).conf
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit > conf.task_soft_time_limit


def test_delivery_is_at_least_once_one_message_at_a_time(tmp_path):
    conf = make_celery(load_settings(data_dir=tmp_path)).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert [queue.name for queue in conf.task_queues] == ["generate", "understand"]
