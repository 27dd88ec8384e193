"""Alembic migrations go up and down on SQLite and PostgreSQL, and match the models."""
import uuid

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from jobs.migrate import alembic_config, upgrade
from jobs.models import Base
from tests.conftest import POSTGRES_ADMIN


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    name = f"janusq_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{POSTGRES_ADMIN.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_up_down_up_and_schema_matches_models(empty_database):
    upgrade(empty_database)
    command.downgrade(alembic_config(empty_database), "base")
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        assert "jobs" not in inspect(connection).get_table_names()
    upgrade(empty_database)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


@pytest.mark.parametrize("later_0003", [False, True])
def test_databases_from_either_0003_end_with_the_owner_status_index(empty_database, later_0003):
    """0003 first shipped without the index and later with it; 0006 brings both to one schema."""
    from sqlalchemy import text

    upgrade(empty_database, "0005")
    engine = create_engine(empty_database)
    with engine.begin() as connection:
        assert "ix_jobs_owner_status" not in {index["name"] for index in inspect(connection).get_indexes("jobs")}
        if later_0003:
            connection.execute(text("CREATE INDEX ix_jobs_owner_status ON jobs (owner, status)"))
    upgrade(empty_database)
    with engine.connect() as connection:
        indexes = {index["name"] for index in inspect(connection).get_indexes("jobs")}
    engine.dispose()
    assert "ix_jobs_owner_status" in indexes
