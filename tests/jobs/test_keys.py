"""API keys: shown once, stored only as a hash, listed without secrets, revoked at once."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from janusq.cli import main
from jobs import keys
from jobs.db import Database
from jobs.migrate import upgrade
from jobs.models import ApiKey


@pytest.fixture
def database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'janus.db'}"
    upgrade(url)
    for name in ("JANUS_DATABASE_URL", "JANUS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JANUS_DATABASE_URL", url)
    monkeypatch.setenv("JANUS_DATA_DIR", str(tmp_path))
    db = Database(url)
    yield db
    db.dispose()


def _rows(db: Database) -> list[ApiKey]:
    with db.session() as session:
        return list(session.execute(select(ApiKey)).scalars())


def test_create_stores_only_a_hash(database):
    with database.session() as session:
        new = keys.create_key(session, "alice", "acme")
    assert re.fullmatch(r"jq_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}", new.secret)
    [row] = _rows(database)
    assert (row.name, row.tenant, row.revoked_at) == ("alice", "acme", None)
    assert row.key_hash == keys.hash_key(new.secret) and len(row.key_hash) == 64
    assert new.secret.startswith(row.prefix + "_") and len(row.prefix) == 11
    stored = " ".join(str(getattr(row, column.key)) for column in ApiKey.__table__.columns)
    assert new.secret not in stored and new.secret[len(row.prefix):] not in stored


def test_tenant_defaults_to_the_name_and_names_are_checked(database):
    with database.session() as session:
        assert keys.create_key(session, "ci").record.tenant == "ci"
        for name in ("", "has space", "-dash-first", "x" * 65, "semi;colon"):
            with pytest.raises(keys.ApiKeyError):
                keys.create_key(session, name)
        with pytest.raises(keys.ApiKeyError):
            keys.create_key(session, "ok", tenant="no/slash")


def test_authenticate_accepts_only_active_known_keys(database):
    with database.session() as session:
        new = keys.create_key(session, "bob")
    with database.session() as session:
        assert keys.authenticate(session, new.secret).id == new.record.id
        for wrong in ("", new.secret[:-1], new.secret + "x", new.record.prefix, "jq_" + "a" * 200,
                      new.record.key_hash):
            assert keys.authenticate(session, wrong) is None
    with database.session() as session:
        assert keys.revoke_key(session, new.record.prefix) == (keys.find_key(session, new.record.id), True)
    with database.session() as session:
        assert keys.authenticate(session, new.secret) is None
        record, revoked = keys.revoke_key(session, new.record.id)
        assert not revoked and record.revoked_at is not None


def test_find_key_by_id_or_prefix(database):
    with database.session() as session:
        new = keys.create_key(session, "carol")
        assert keys.find_key(session, new.record.id) is new.record
        assert keys.find_key(session, f" {new.record.prefix} ") is new.record
        with pytest.raises(keys.ApiKeyError, match="no API key"):
            keys.find_key(session, "jq_nothing")
        with pytest.raises(keys.ApiKeyError):
            keys.find_key(session, new.secret)  # the secret is neither id nor prefix


def test_cli_create_list_revoke(database, capsys):
    assert main(["keys", "create", "--name", "laptop", "--tenant", "acme"]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert re.fullmatch(r"jq_\w{8}_[\w-]{43}", secret)  # the key alone on stdout
    assert "shown only this once" in err and "tenant acme" in err and secret not in err
    [row] = _rows(database)
    assert row.key_hash == keys.hash_key(secret)

    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert row.id in listing and row.prefix in listing and "laptop" in listing and "acme" in listing
    assert "active" in listing and secret not in listing and secret[11:] not in listing

    assert main(["keys", "revoke", row.prefix]) == 0
    assert "revoked" in capsys.readouterr().out
    assert _rows(database)[0].revoked_at is not None
    assert main(["keys", "list"]) == 0
    assert "revoked 20" in capsys.readouterr().out
    assert main(["keys", "revoke", row.id]) == 0
    assert "already revoked" in capsys.readouterr().out


def test_cli_errors_are_one_line(database, capsys, tmp_path, monkeypatch):
    assert main(["keys", "revoke", "jq_missing"]) == 1
    assert capsys.readouterr().err.strip() == "janusq: no API key with id or prefix 'jq_missing'"
    assert main(["keys", "create", "--name", "two words"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("janusq: name must be") and "\n" not in err
    monkeypatch.setenv("JANUS_DATABASE_URL", f"sqlite:///{tmp_path / 'unmigrated.db'}")
    assert main(["keys", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert "janusq migrate" in err and "\n" not in err


def test_cli_admin_keys_are_marked_and_listed_as_admin(database, capsys):
    assert main(["keys", "create", "--name", "ops", "--admin"]) == 0
    out, err = capsys.readouterr()
    assert "created admin API key" in err
    assert main(["keys", "create", "--name", "ci"]) == 0
    capsys.readouterr()
    with database.session() as session:
        admin = keys.authenticate(session, out.strip())
        assert admin.admin is True
        assert {row.name: row.admin for row in keys.list_keys(session)} == {"ops": True, "ci": False}
    assert main(["keys", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "ROLE" in lines[0]
    assert " admin " in next(line for line in lines if " ops " in line)
    assert " tenant " in next(line for line in lines if " ci " in line)
