"""Errors the framework raises still come out as the API's JSON errors."""
from api.app import create_app


def test_unknown_route_and_wrong_method_are_json(tmp_path):
    client = create_app(data_dir=tmp_path).test_client()
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    wrong = client.delete("/healthz")
    assert wrong.status_code == 405 and wrong.json["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


def test_a_warm_app_has_read_the_tokenizer_before_its_first_request(tiny_checkpoint, tmp_path):
    from api.app import create_app

    app = create_app(warm=True, data_dir=tmp_path, model=str(tiny_checkpoint))
    assert app.extensions["janus"]._prompt_budget is not None
    cold = create_app(data_dir=tmp_path, model=str(tiny_checkpoint))
    assert cold.extensions["janus"]._prompt_budget is None


def test_a_warm_app_starts_even_when_the_tokenizer_is_unreadable(tmp_path, caplog):
    from api.app import create_app

    app = create_app(warm=True, data_dir=tmp_path, model=str(tmp_path / "no-such-checkpoint"))
    assert app.extensions["janus"]._prompt_budget is None
    assert "tokenizer is not readable yet" in caplog.text
