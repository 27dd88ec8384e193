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
