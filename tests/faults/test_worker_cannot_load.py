"""A worker that cannot load its model exits with one line and takes no job; /readyz says so.

The job submitted before the broken worker starts must still be queued, unclaimed, when that
worker has gone, and a healthy worker started afterwards runs it.
"""
from __future__ import annotations

import time

import pytest
import requests

from tests.e2e.stack import Stack
from tests.faults.conftest import rows
from worker.model_gate import MODEL_FAILED_EXIT


def wait_exit(process, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    return process.poll()


@pytest.mark.parametrize("broken, says", [
    ({"JANUS_MODEL": "/nonexistent/janus"}, "/nonexistent/janus"),
    ({"JANUS_DEVICE": "cuda"}, "CUDA"),  # no GPU on this machine
])
def test_a_worker_that_cannot_load_its_model_exits_and_claims_nothing(make_stack, database_url, broken, says):
    stack = make_stack(workers=0)
    job_id = stack.submit(type="understand", question="what is this?", max_new_tokens=2,
                          image="data:image/png;base64," + TINY_PNG).json()["id"]
    worker = stack.start_worker(env=broken)
    code = wait_exit(worker, timeout=90)
    log = (stack.log_dir / "worker0.log").read_text(errors="replace")
    assert code == MODEL_FAILED_EXIT, log
    lines = [line for line in log.splitlines() if "cannot load the model" in line]
    assert len(lines) == 1 and says in lines[0], log
    assert "Traceback" not in log
    row = rows(database_url, [job_id])[job_id]
    assert (row.status, row.attempts, row.worker) == ("queued", 0, None)

    stack.workers.remove(worker)
    stack.start_worker()  # a healthy worker takes the job the broken one left alone
    assert stack.wait(job_id, timeout=120)["status"] == "succeeded", stack.logs()


def test_readyz_names_the_model_when_its_tokenizer_cannot_be_read(tmp_path, database_url, redis_server):
    env = {"JANUS_DATA_DIR": str(tmp_path / "var"), "JANUS_MODEL": "/nonexistent/janus",
           "JANUS_DATABASE_URL": database_url, "JANUS_BROKER_URL": redis_server.url, "JANUS_API_WORKERS": "1"}
    stack = Stack(env, tmp_path)
    stack.api = stack._spawn("api", "serve")
    try:
        ready = first_answer(stack.base_url + "/readyz", timeout=60)
        body = ready.json()
        assert ready.status_code == 503, body
        assert body["checks"]["model"].startswith("down") and body["checks"]["database"] == "ok"
        assert "model" in body["error"]["message"]
    finally:
        stack.stop()


def first_answer(url: str, timeout: float) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=30)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


# An 8x8 PNG, so the understand job needs no file.
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGM8ISfHgA0wYRUdtBIA0MoBFD5jqJkAAAAASUVORK5CYII="
