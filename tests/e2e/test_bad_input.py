"""Every kind of bad input gets a JSON 4xx, creates no job and enqueues nothing."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
import redis
import requests
from PIL import Image

from tests.e2e.helpers import data_url, png_bytes

GOOD_IMAGE = data_url(png_bytes())


def _bomb_png(width=60000, height=60000) -> bytes:
    """A valid PNG header claiming 3.6 gigapixels, with almost no data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    return buffer.getvalue()


JSON_CASES = [
    ("missing prompt", {"type": "generate"}, 422, "prompt"),
    ("empty prompt", {"type": "generate", "prompt": "   "}, 422, "prompt"),
    ("prompt over the character cap", {"type": "generate", "prompt": "x" * 5000}, 422, "prompt"),
    ("reserved token in prompt", {"type": "generate", "prompt": "draw <image_placeholder> twice"}, 422, "prompt"),
    ("reserved token in question", {"type": "understand", "question": "<begin_of_image>?", "image": GOOD_IMAGE}, 422, "question"),
    ("num_images 0", {"type": "generate", "prompt": "p", "num_images": 0}, 422, "num_images"),
    ("num_images 17", {"type": "generate", "prompt": "p", "num_images": 17}, 422, "num_images"),
    ("negative temperature", {"type": "generate", "prompt": "p", "temperature": -1}, 422, "temperature"),
    ("unknown field", {"type": "generate", "prompt": "p", "steps": 3}, 422, "steps"),
    ("unknown type", {"type": "edit", "prompt": "p"}, 422, "type"),
    ("missing question", {"type": "understand", "image": GOOD_IMAGE}, 422, "question"),
    ("empty question", {"type": "understand", "question": "", "image": GOOD_IMAGE}, 422, "question"),
    ("missing image", {"type": "understand", "question": "q"}, 422, "image"),
    ("max_new_tokens 1025", {"type": "understand", "question": "q", "image": GOOD_IMAGE, "max_new_tokens": 1025}, 422, "max_new_tokens"),
    ("top_p 0", {"type": "understand", "question": "q", "image": GOOD_IMAGE, "top_p": 0}, 422, "top_p"),
    ("top_p 1.5", {"type": "understand", "question": "q", "image": GOOD_IMAGE, "top_p": 1.5}, 422, "top_p"),
    ("not a data URL", {"type": "understand", "question": "q", "image": "http://example.com/x.png"}, 422, "image"),
    ("non-image data", {"type": "understand", "question": "q", "image": data_url(b"hello, not an image")}, 422, "image"),
    ("truncated PNG", {"type": "understand", "question": "q", "image": data_url(png_bytes((300, 300))[:200])}, 422, "image"),
    ("unsupported format", {"type": "understand", "question": "q", "image": data_url(_tiff(), "image/tiff")}, 415, "image"),
    ("decompression bomb", {"type": "understand", "question": "q", "image": data_url(_bomb_png())}, 422, "image"),
]


@pytest.fixture
def unchanged(distributed_stack):
    """Asserts, after the test, that no job row and no broker message appeared."""
    broker = redis.Redis.from_url(distributed_stack.env["JANUS_BROKER_URL"])

    def queued() -> int:
        return sum(broker.llen(name) for name in ("generate", "understand"))

    before = (distributed_stack.job_count(), queued())
    yield
    assert (distributed_stack.job_count(), queued()) == before


def _assert_error(response: requests.Response, status: int, field: str | None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if field is not None:
        assert error["field"] == field, error


@pytest.mark.parametrize("name,body,status,field", JSON_CASES, ids=[case[0] for case in JSON_CASES])
def test_bad_json_job_is_rejected(distributed_stack, unchanged, name, body, status, field):
    _assert_error(distributed_stack.submit(**body), status, field)


def test_prompt_longer_than_model_context(distributed_stack, unchanged):
    # Under the character cap but over the tiny model's 2048-token context.
    response = distributed_stack.submit(type="generate", prompt="a b " * 990)
    _assert_error(response, 422, "prompt")
    assert response.json()["error"]["code"] == "prompt_too_long"


def test_malformed_json(distributed_stack, unchanged):
    response = requests.post(distributed_stack.base_url + "/v1/jobs", data=b"{not json",
                             headers={"Content-Type": "application/json"}, timeout=10)
    _assert_error(response, 400, None)


def test_unsupported_content_type(distributed_stack, unchanged):
    response = requests.post(distributed_stack.base_url + "/v1/jobs", data=b"prompt=x",
                             headers={"Content-Type": "text/plain"}, timeout=10)
    _assert_error(response, 415, None)


def test_body_over_upload_limit(distributed_stack, unchanged):
    big = b"0" * (distributed_stack.settings.max_upload_bytes + 1)
    response = requests.post(distributed_stack.base_url + "/v1/jobs", timeout=30,
                             data={"type": "understand", "question": "q"},
                             files={"image": ("big.png", big, "image/png")})
    _assert_error(response, 413, None)


def test_multipart_non_image_upload(distributed_stack, unchanged):
    response = requests.post(distributed_stack.base_url + "/v1/jobs", timeout=10,
                             data={"type": "understand", "question": "q"},
                             files={"image": ("notes.txt", b"plain text", "text/plain")})
    _assert_error(response, 422, "image")


def test_bad_idempotency_key(distributed_stack, unchanged):
    response = requests.post(distributed_stack.base_url + "/v1/jobs", json={"type": "generate", "prompt": "p"},
                             headers={"Idempotency-Key": "x" * 256}, timeout=10)
    _assert_error(response, 422, "Idempotency-Key")


def test_unknown_job_is_404(distributed_stack, unchanged):
    base = distributed_stack.base_url
    _assert_error(requests.get(base + "/v1/jobs/0123456789abcdef0123456789abcdef", timeout=5), 404, None)
    _assert_error(requests.post(base + "/v1/jobs/nope/cancel", timeout=5), 404, None)
    _assert_error(requests.get(base + "/v1/jobs/nope/images/0", timeout=5), 404, None)
    _assert_error(requests.get(base + "/no/such/route", timeout=5), 404, None)


def test_bad_list_queries(distributed_stack, unchanged):
    base = distributed_stack.base_url + "/v1/jobs"
    for params, field in [({"status": "done"}, "status"), ({"limit": "0"}, "limit"),
                          ({"cursor": "!!!"}, "cursor"), ({"type": "edit"}, "type"), ({"sort": "x"}, "sort")]:
        _assert_error(requests.get(base, params=params, timeout=5), 422, field)
