"""The OpenAI-compatible endpoints through the real openai package, against `janusq serve` and real
workers (the tiny model): `make run`'s embedded stack (auth off on loopback) and the PostgreSQL +
Redis + S3 one with auth on, a key made by `janusq keys create` (as tests/client does). The error
cases, rate limits and the cap are covered in tests/api/test_openai_compat.py; here the answers
(images that decode, streamed chunks that join to the job's answer), the key, and the jobs."""
from __future__ import annotations

import base64
import io
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests
from PIL import Image

from tests.e2e.conftest import distributed_env, embedded_env
from tests.e2e.helpers import data_url, fetch_image, png_bytes
from tests.e2e.stack import Stack

QUESTION = [{"role": "user", "content": [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": data_url(png_bytes())}}]}]


# The endpoints wait for their job up to JANUS_MAX_WAIT_SECONDS (60), then answer 504. A one-image
# tiny job takes about 3 s on a quiet machine but took 47 s at load average 7: wait up to just
# under the client's 120 s timeout, so a busy CI machine does not turn into a 504.
PATIENT = {"JANUS_MAX_WAIT_SECONDS": "110"}


@pytest.fixture(scope="module")
def embedded_stack(tmp_path_factory, tiny_checkpoint):
    env = {**embedded_env(tmp_path_factory, tiny_checkpoint), **PATIENT}
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=1) as stack:
        yield stack


@pytest.fixture(scope="module")
def keyed_distributed_stack(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url, s3_server, s3_storage_url):
    env = distributed_env(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url, s3_server, s3_storage_url)
    with Stack({**env, "JANUS_AUTH": "on", **PATIENT}, tmp_path_factory.mktemp("logs")).start(workers=2) as stack:
        yield stack


@pytest.fixture(scope="module", params=["embedded_stack", "keyed_distributed_stack"])
def stack(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def key(stack) -> str:
    """A key of a tenant of its own; with auth off (loopback) the SDK still sends one, unused."""
    if not stack.settings.auth_enabled:
        return "jq_unused"
    made = subprocess.run([sys.executable, "-m", "janusq", "keys", "create", "--name", "openai-e2e",
                           "--tenant", f"openai-{uuid.uuid4().hex[:8]}"],
                          capture_output=True, text=True, timeout=60, env=stack.env, check=True)
    return made.stdout.strip()


@pytest.fixture(scope="module")
def client(stack, key):
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def made(stack):
    """The ids of the jobs this module's requests made, per stack."""
    return []


def get(stack, key: str, path: str, **params) -> dict:
    response = requests.get(stack.base_url + path, params=params, timeout=10,
                            headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return response.json()


def test_images_as_urls_and_as_b64_json(stack, client, made):
    # At once, so that the two jobs can share a batch: the tiny model takes seconds an image on a CPU.
    with ThreadPoolExecutor(2) as pool:
        by_url, as_b64 = pool.map(lambda response_format: client.images.with_raw_response.generate(
            model="dall-e-3", prompt="a red fox", n=1, size="384x384", response_format=response_format),
            ["url", "b64_json"])
    urls = [item.url for item in by_url.parse().data]
    assert ("signature=" in urls[0]) is stack.settings.auth_enabled  # fetched below without the key
    images = [fetch_image(url) for url in urls]
    images += [Image.open(io.BytesIO(base64.b64decode(item.b64_json))) for item in as_b64.parse().data]
    assert [(image.format, image.size) for image in images] == [("PNG", (384, 384))] * 2
    made += [raw.headers["Location"].rsplit("/", 1)[1] for raw in (by_url, as_b64)]


def test_chat_completion_and_its_stream(stack, key, client, made):
    completion = client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=16, seed=1)
    job = get(stack, key, f"/v1/jobs/{completion.id}")
    assert job["status"] == "succeeded" and job["params"]["max_new_tokens"] == 16
    assert completion.choices[0].message.content == job["result"]["text"]
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_completion_tokens=16,
                                                 seed=2, stream=True))
    streamed = get(stack, key, f"/v1/jobs/{chunks[0].id}")
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == streamed["result"]["text"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    made += [completion.id, streamed["id"]]


def test_a_request_janus_cannot_serve_raises_the_typed_error(client):
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.images.generate(prompt="a red fox", size="1024x1024")
    assert raised.value.body["param"] == "size" and raised.value.body["type"] == "invalid_request_error"


def test_a_wrong_key_raises_authentication_error(stack):
    if not stack.settings.auth_enabled:
        pytest.skip("auth is off on loopback (make run): any key is let in")
    wrong = openai.OpenAI(base_url=stack.base_url + "/v1", api_key="jq_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        wrong.chat.completions.create(model="janus", messages=QUESTION)
    assert raised.value.body["code"] == "unauthorized"


def test_the_jobs_are_ordinary_jobs(stack, key, made):
    listed = get(stack, key, "/v1/jobs", limit=100)["data"]
    assert len(made) == 4 and set(made) <= {job["id"] for job in listed}
