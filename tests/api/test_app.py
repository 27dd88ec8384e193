"""Errors the framework raises still come out as the API's JSON errors."""
from api.app import create_app


def test_unknown_route_and_wrong_method_are_json(tmp_path):
    client = create_app(data_dir=tmp_path).test_client()
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    wrong = client.delete("/healthz")
    assert wrong.status_code == 405 and wrong.json["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]
