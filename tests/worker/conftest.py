from __future__ import annotations

import uuid

import psycopg
import pytest

from jobs.db import Database
from jobs.migrate import upgrade
from tests.conftest import POSTGRES_ADMIN


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A migrated, empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        name = None
    else:
        name = f"janusq_worker_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{POSTGRES_ADMIN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    upgrade(url)
    db = Database(url)
    yield db
    if db._engine is not None:
        db._engine.dispose()
    if name:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from janus_model import load_model

    return load_model(str(tiny_checkpoint), device="cpu", dtype="float32")
