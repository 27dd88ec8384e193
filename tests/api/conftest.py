"""An API app on a real PostgreSQL database, with API keys made the way `janusq keys create` does."""
from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.app import create_app
from jobs import keys
from jobs.db import Database
from jobs.models import Job
from tests.pgdb import fresh_database


@pytest.fixture(scope="module")
def pg_database():
    """A migrated PostgreSQL database of this module's own (tests count rows in it)."""
    with fresh_database("janusq_api") as url:
        yield url


@pytest.fixture(scope="module")
def pg(pg_database):
    db = Database(pg_database)
    yield db
    db.dispose()


class ApiUnderTest:
    """A Flask test client plus what a test needs to look behind it."""

    def __init__(self, app, data_dir: Path, db: Database):
        self.app = app
        self.client = app.test_client()
        self.settings = app.extensions["janus"].settings
        self.data_dir = data_dir
        self.db = db

    def broker_messages(self) -> int:
        """Messages published to the embedded broker (kombu's SQLAlchemy transport)."""
        path = self.data_dir / "broker.db"
        if not path.exists():
            return 0
        with sqlite3.connect(path) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            return connection.execute("SELECT count(*) FROM kombu_message").fetchone()[0] \
                if "kombu_message" in tables else 0

    def jobs_of(self, owner: str) -> list[Job]:
        with self.db.session() as session:
            return list(session.execute(select(Job).where(Job.owner == owner)).scalars())

    def job_count(self) -> int:
        with self.db.session() as session:
            return session.execute(select(func.count()).select_from(Job)).scalar_one()


@pytest.fixture
def make_api(tmp_path, tiny_checkpoint, pg_database, pg):
    """make_api(**settings) -> ApiUnderTest; PostgreSQL, the embedded broker, local storage."""
    made = []

    def make(**overrides) -> ApiUnderTest:
        data_dir = tmp_path / f"var{len(made)}"
        data_dir.mkdir()  # the embedded broker's SQLite file goes here
        settings = {"data_dir": data_dir, "database_url": pg_database, "model": str(tiny_checkpoint),
                    "auth": "on", **overrides}
        api = ApiUnderTest(create_app(**settings), data_dir, pg)
        made.append(api)
        return api

    yield make
    for api in made:
        api.app.extensions["janus"].db.dispose()


@pytest.fixture
def new_key(pg):
    """new_key(tenant=None, name=None) -> the secret of a fresh key of that tenant."""

    def make(tenant: str | None = None, name: str | None = None) -> str:
        with pg.session() as session:
            return keys.create_key(session, name or f"key-{uuid.uuid4().hex[:8]}", tenant).secret

    return make


@pytest.fixture
def tenant():
    """A tenant name no other test uses, so counts and listings start empty."""
    return lambda label="t": f"{label}-{uuid.uuid4().hex[:10]}"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}

