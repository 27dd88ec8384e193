"""A fresh PostgreSQL database of a test's own, migrated, dropped afterwards."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

import psycopg

from jobs.migrate import upgrade
from tests.conftest import POSTGRES_ADMIN


@contextmanager
def fresh_database(label: str = "janusq_t") -> Iterator[str]:
    """Yields the SQLAlchemy URL of a new, migrated database."""
    name = f"{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
