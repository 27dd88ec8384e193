"""The API in front of simulated workers: its prompt check and /readyz need no tokenizer."""
from __future__ import annotations

from tests.api.conftest import bearer


def test_readyz_and_submits_work_with_a_simulated_model(make_api, new_key):
    api = make_api(model="simulated:h100-janus-pro-7b?scale=5")
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"]["model"] == "ok"
    headers = bearer(new_key())
    accepted = api.client.post("/v1/jobs", json={"type": "generate", "prompt": "a fox", "num_images": 1},
                               headers=headers)
    assert accepted.status_code in (201, 202), accepted.get_json()
    reserved = api.client.post("/v1/jobs", json={"type": "generate", "prompt": "a <begin_of_image> fox"},
                               headers=headers)
    assert reserved.status_code == 422 and reserved.get_json()["error"]["field"] == "prompt"
