"""The SDK and the CLI end to end against a real stack; test_e2e_embedded.py and
test_e2e_distributed.py run these against their stack through a `service` fixture giving
(base URL, API key or None)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from janusq.client import Client, ConflictError, NotFoundError, ValidationError
from tests.e2e.helpers import png_bytes

PNG = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 120
# One image per generate: the tiny model draws one in 2 to 20 s on a busy 2-core machine, so the
# cases make two generate jobs in all (the 16-image job is canceled at once).
IMAGES = 1


@pytest.fixture(scope="module")
def client(service) -> Client:
    url, key = service
    return Client(url, key)


def janusq(service, *args: str) -> subprocess.CompletedProcess:
    """`janusq ARGS` as a user runs it: the service from JANUS_URL / JANUS_API_KEY."""
    url, key = service
    env = {**os.environ, "JANUS_URL": url, "JANUS_API_KEY": key or ""}
    return subprocess.run([sys.executable, "-m", "janusq", *args], capture_output=True, text=True,
                          timeout=TIMEOUT + 30, env=env)


def test_generate_returns_the_images(client):
    job = client.generate("a red fox in the snow", num_images=IMAGES, seed=7, timeout=TIMEOUT)
    assert job.succeeded and job.kind == "generate" and job.seed == 7 and job.error is None
    assert len(job.images) == IMAGES and all(image.startswith(PNG) for image in job.images)
    assert job.timings.run_seconds is not None and job.timings.finished_at
    as_pil = client.jobs.handle(job.id).images(pil=True)
    assert [image.size for image in as_pil] == [(image["width"], image["height"]) for image in job.raw["result"]["images"]]


def test_understand_takes_a_pil_image_and_answers(client):
    job = client.understand(Image.new("RGB", (64, 48), (200, 30, 30)), "What colour is this?",
                            max_new_tokens=8, seed=1, timeout=TIMEOUT)
    assert job.succeeded and job.kind == "understand" and isinstance(job.answer, str)
    assert job.raw["params"]["image"] == {"width": 64, "height": 48, "format": "png"}


def test_events_stream_the_job_to_its_completion(client):
    handle = client.submit("understand", image=png_bytes(), question="Describe it.", max_new_tokens=16, seed=2)
    events = list(handle.events())
    kinds = [event.type for event in events]
    assert kinds[-1] == "completed" and "status" in kinds and "output" in kinds, kinds
    assert handle.job.succeeded
    outputs = [event.data["text"] for event in events if event.type == "output"]
    assert outputs[-1] == handle.job.answer  # the last streamed text is the answer
    # Reading again after one event gets the rest, not the history (Last-Event-ID).
    rest = list(handle.events(last_event_id=events[0].id))
    assert [event.id for event in rest] == [event.id for event in events[1:]]


def test_cancel_stops_a_job(client):
    handle = client.submit("generate", prompt="a long job to cancel", num_images=16)
    next(iter(handle.events()))  # queued or started: something happened
    handle.cancel()
    assert handle.wait(TIMEOUT).status == "canceled"
    with pytest.raises(ConflictError) as raised:
        handle.cancel()
    assert raised.value.code == "conflict" and raised.value.status == 409


def test_list_pages_through_the_history(client):
    for seed in range(3):  # understand jobs: a second each with the tiny model, where generate takes ten
        client.submit("understand", image=png_bytes(), question=f"paging {seed}", max_new_tokens=2).wait(TIMEOUT)
    everything = [job.id for job in client.jobs.list(limit=100, page_size=100)]
    assert len(everything) >= 5
    assert [job.id for job in client.jobs.list(page_size=2)] == everything
    assert [job.id for job in client.jobs.list(limit=3, page_size=2)] == everything[:3]
    assert all(job.kind == "understand" for job in client.jobs.list(kind="understand"))


def test_errors_carry_the_apis_code(client):
    with pytest.raises(NotFoundError) as missing:
        client.jobs.get("no-such-job")
    assert (missing.value.code, missing.value.status) == ("not_found", 404)
    with pytest.raises(ValidationError) as invalid:
        client.submit("generate", prompt="too many", num_images=99)
    assert (invalid.value.code, invalid.value.field) == ("validation_error", "num_images")


def test_cli_generate_writes_the_pngs(service, tmp_path):
    done = janusq(service, "submit", "generate", "a red fox", "--num-images", str(IMAGES), "--wait", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    paths = done.stdout.split()
    assert len(paths) == IMAGES and all(open(path, "rb").read().startswith(PNG) for path in paths)


def test_cli_understand_prints_the_answer_and_jobs_commands_find_it(service, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes())
    done = janusq(service, "submit", "understand", str(photo), "what is this?", "--max-new-tokens", "8",
                  "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded"
    listed = json.loads(janusq(service, "jobs", "list", "--type", "understand", "--limit", "1", "--json").stdout)
    assert [row["id"] for row in listed] == [job["id"]]
    shown = janusq(service, "jobs", "get", job["id"])
    assert shown.returncode == 0 and shown.stdout.startswith(f"{job['id']}  understand  succeeded")
    refused = janusq(service, "jobs", "cancel", job["id"])
    assert refused.returncode == 1 and refused.stderr.startswith("janusq: 409 conflict: job already succeeded")


def test_cli_watch_shows_progress_and_the_streamed_text(service, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes())
    submitted = janusq(service, "submit", "understand", "--max-new-tokens", "32", str(photo), "describe")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    watched = janusq(service, "jobs", "watch", job_id)
    assert watched.returncode == 0, watched.stderr
    assert f"job {job_id} succeeded" in watched.stderr and "status: " in watched.stderr
    answer = Client(*service).jobs.get(job_id).answer
    assert watched.stdout.strip() == answer.strip()

