"""Apply Alembic migrations programmatically (`janusq migrate`, `janusq run`)."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from alembic import command
from alembic.config import Config

import migrations


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # ConfigParser interpolation would choke on '%' in passwords.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@contextmanager
def scratch_database(admin_url: str, label: str) -> Iterator[str]:
    """A new, migrated PostgreSQL database on `admin_url`'s server, dropped afterwards: the
    throwaway database of a test or a benchmark. Yields its SQLAlchemy URL."""
    import psycopg

    admin = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"{label}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(admin)._replace(scheme="postgresql+psycopg", path=f"/{name}").geturl()
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
