"""The embedded broker of `make run`: kombu's SQLAlchemy transport, polling more often.

kombu hands every transport option of this transport to create_engine, so its polling interval
cannot be set through Celery's broker_transport_options; a subclass sets it instead.
"""
from kombu.transport import sqlalchemy

SCHEME = "sqla+"


class Transport(sqlalchemy.Transport):
    # kombu's default is one poll a second, i.e. half a second of latency per job on average.
    polling_interval = 0.1


def celery_broker_settings(broker_url: str) -> dict:
    """Celery settings that route a `sqla+<database url>` broker through this transport."""
    return {"broker_url": broker_url[len(SCHEME):], "broker_transport": f"{__name__}:Transport"}
