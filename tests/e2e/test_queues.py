"""Each job type travels on its own queue; `janusq worker --queues` picks what a worker serves."""
from __future__ import annotations

import shutil
import time

import pytest

from tests.e2e.helpers import data_url, png_bytes
from tests.e2e.stack import Stack


@pytest.fixture
def generate_only_stack(tmp_path, tiny_checkpoint):
    shutil.copytree(tiny_checkpoint, tmp_path / "var" / "models" / "janus-tiny")
    with Stack({"JANUS_DATA_DIR": str(tmp_path / "var")}, tmp_path).start(workers=1, queues="generate") as stack:
        yield stack


def test_a_worker_serves_only_its_queues(generate_only_stack):
    stack = generate_only_stack
    understand = stack.submit(type="understand", question="q", image=data_url(png_bytes()), max_new_tokens=2).json()
    generate = stack.submit(type="generate", prompt="p", num_images=1).json()
    assert stack.wait(generate["id"])["status"] == "succeeded"
    time.sleep(1.0)  # ten polls of the embedded broker: ample time to (wrongly) take it
    assert stack.job(understand["id"])["status"] == "queued"

    stack.start_worker(queues="understand")
    assert stack.wait(understand["id"])["status"] == "succeeded"
