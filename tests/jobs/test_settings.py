import pytest

from jobs.settings import SettingsError, load_settings


def test_embedded_defaults_live_under_the_data_dir(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    assert settings.database == f"sqlite:///{tmp_path / 'janus.db'}"
    assert settings.broker.startswith("sqla+sqlite:///") and str(tmp_path) in settings.broker
    assert settings.storage == f"file://{tmp_path / 'storage'}"
    assert settings.model_source == str(tmp_path / "models" / "janus-tiny")


def test_hub_id_passes_through():
    assert load_settings(model="deepseek-community/Janus-Pro-1B").model_source == "deepseek-community/Janus-Pro-1B"


@pytest.mark.parametrize("variable,value", [
    ("JANUS_PORT", "eighty"), ("JANUS_PORT", "70000"), ("JANUS_DEVICE", "tpu"),
    ("JANUS_DTYPE", "int3"), ("JANUS_STORAGE_URL", "ftp://x"), ("JANUS_STORAGE_URL", "s3://"),
    ("JANUS_STORAGE_URL", "file://var/storage"),
    ("JANUS_MAX_UPLOAD_BYTES", "-1"),
])
def test_bad_value_names_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert variable in str(error.value) and "\n" not in str(error.value)


def test_time_limits_must_nest(monkeypatch):
    monkeypatch.setenv("JANUS_JOB_TIME_LIMIT", "5000")
    with pytest.raises(SettingsError, match="JANUS_JOB_SOFT_TIME_LIMIT"):
        load_settings()


def test_cli_reports_bad_setting_in_one_line(monkeypatch, capsys):
    from janusq.cli import main

    monkeypatch.setenv("JANUS_DEVICE", "gpu9")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("janusq: invalid JANUS_DEVICE") and "\n" not in err


@pytest.mark.parametrize("host,auth,enabled", [
    ("127.0.0.1", "auto", False), ("localhost", "auto", False), ("::1", "auto", False),
    ("127.0.0.2", "auto", False), ("0.0.0.0", "auto", True), ("10.1.2.3", "auto", True),
    ("::", "auto", True), ("api.example.com", "auto", True),
    ("127.0.0.1", "on", True), ("0.0.0.0", "on", True), ("127.0.0.1", "off", False),
])
def test_auth_follows_the_host(host, auth, enabled):
    assert load_settings(host=host, auth=auth).auth_enabled is enabled


def test_auth_defaults_to_auto_and_rate_limit_to_the_redis_broker(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    assert settings.auth == "auto" and not settings.auth_enabled  # loopback default host
    assert settings.url_ttl == 900
    assert settings.rate_limit_redis is None  # embedded broker: counted per process
    redis_broker = load_settings(broker_url="redis://broker:6379/0")
    assert redis_broker.rate_limit_redis == "redis://broker:6379/0"
    own = load_settings(broker_url="redis://broker:6379/0", rate_limit_redis_url="redis://other:6379/1")
    assert own.rate_limit_redis == "redis://other:6379/1"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
def test_auth_off_beyond_loopback_is_refused(monkeypatch, host):
    monkeypatch.setenv("JANUS_HOST", host)
    monkeypatch.setenv("JANUS_AUTH", "off")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value).startswith("invalid JANUS_AUTH") and "\n" not in str(error.value)


@pytest.mark.parametrize("variable,value", [
    ("JANUS_AUTH", "yes"), ("JANUS_RATE_LIMIT_PER_MINUTE", "-1"),
    ("JANUS_MAX_UNFINISHED_JOBS", "many"), ("JANUS_RATE_LIMIT_REDIS_URL", "http://redis:6379"),
])
def test_bad_security_settings_name_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert variable in str(error.value)


def test_serve_says_when_auth_is_off(caplog):
    from janusq.cli import log_auth_mode

    with caplog.at_level("INFO", logger="janusq"):
        log_auth_mode(load_settings(host="127.0.0.1"))
        log_auth_mode(load_settings(host="0.0.0.0"))
    off, on = caplog.messages
    assert "auth is OFF" in off and "loopback 127.0.0.1" in off and "JANUS_AUTH=on" in off
    assert "auth is on" in on and "Bearer" in on


@pytest.mark.parametrize("url", ["postgres://app:pw@db.example:5432/janus", "postgresql://app:pw@db.example:5432/janus"])
def test_hosted_postgres_urls_use_psycopg_and_hide_the_password(url):
    settings = load_settings(database_url=url)
    assert settings.database == "postgresql+psycopg://app:pw@db.example:5432/janus"
    assert settings.database_label == "postgresql+psycopg://app:***@db.example:5432/janus"


@pytest.mark.parametrize("url", ["mysql://u:pw@h/db", "postgresql+psycopg2://u:pw@h/db", "oracle-ish://x", "just-a-path"])
def test_unusable_database_url_is_one_line_naming_the_variable(url):
    with pytest.raises(SettingsError) as error:
        load_settings(database_url=url)
    message = str(error.value)
    assert message.startswith("invalid JANUS_DATABASE_URL: ") and "\n" not in message and "pw" not in message


def test_a_mistyped_variable_is_a_warning_with_the_likely_name(monkeypatch, caplog):
    monkeypatch.setenv("JANUS_DATABSE_URL", "postgres://x/y")
    monkeypatch.setenv("JANUS_TEST_SOMETHING", "1")  # the test suite's own, not a typo
    load_settings()
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == ["JANUS_DATABSE_URL is not a setting (did you mean JANUS_DATABASE_URL?)"]


def test_migrate_accepts_a_postgres_url_and_names_a_missing_database(postgres_url, monkeypatch, capsys):
    from janusq.cli import main

    monkeypatch.setenv("JANUS_DATABASE_URL", postgres_url.replace("postgresql+psycopg://", "postgres://"))
    assert main(["migrate"]) == 0
    monkeypatch.setenv("JANUS_DATABASE_URL", postgres_url + "_missing")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("janusq: cannot use the database postgresql+psycopg://") and "does not exist" in err
    assert "\n" not in err


def test_a_worker_on_an_unmigrated_database_says_so_and_takes_nothing(tmp_path, monkeypatch, capsys):
    from janusq.cli import main

    monkeypatch.setenv("JANUS_DATA_DIR", str(tmp_path))
    assert main(["worker"]) == 1
    err = capsys.readouterr().err.strip()
    assert "has `janusq migrate` been run?" in err and "\n" not in err


def test_the_label_of_a_url_without_password_is_the_url():
    assert load_settings(database_url="sqlite:////srv/janus.db").database_label == "sqlite:////srv/janus.db"
