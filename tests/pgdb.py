"""A fresh PostgreSQL database of a test's own, migrated, dropped afterwards."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from jobs.migrate import scratch_database
from tests.conftest import POSTGRES_ADMIN


@contextmanager
def fresh_database(label: str = "janusq_t") -> Iterator[str]:
    """Yields the SQLAlchemy URL of a new, migrated database."""
    with scratch_database(POSTGRES_ADMIN, label) as url:
        yield url
