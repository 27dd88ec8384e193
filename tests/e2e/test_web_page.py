"""The web page at `/` (api/page.py, api/web/) in headless Chromium against the real service.

`make run`'s configuration (embedded_stack, auth off): a generate job submitted through the
page shows its progress, previews and images, lands in the gallery and the history, and its
PNG downloads; an understand job's answer streams in; a job is canceled from the history; the
history pages. The PostgreSQL + Redis + S3 stack with auth on: the key typed into the page is
kept in localStorage and sent as a header, and the images (signed URLs, then S3) show.
Screenshots land in var/artifacts/ (printed; git-ignored).
"""
from __future__ import annotations

import re
import tomllib
import uuid
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from jobs.db import Database
from jobs.keys import create_key
from tests.e2e.browser import launch, new_page, screenshot
from tests.e2e.conftest import distributed_env, embedded_env
from tests.e2e.helpers import png_bytes
from tests.e2e.stack import Stack

WEB_DIR = Path(__file__).resolve().parents[2] / "api" / "web"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A tiny job takes seconds on a quiet machine, but a one-image one took 47 s at load average 7.
JOB_TIMEOUT_MS = 180_000
ALL_RESULTS_LOADED = """(selector) => {
  const images = [...document.querySelectorAll(selector)];
  return images.length > 0 && images.every((img) => img.complete && img.naturalWidth === 384);
}"""


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    errors: list[str] = []
    page = new_page(browser, errors)
    yield page
    page.context.close()
    assert errors == [], f"the page's scripts failed: {errors}"


@pytest.fixture(scope="module")
def embedded_stack(tmp_path_factory, tiny_checkpoint):
    """`make run`'s configuration, with output events every 0.1 s instead of 0.5: the tiny
    model writes a whole answer in under a second on a quiet machine, and the understand test
    must see it arrive in pieces."""
    env = {**embedded_env(tmp_path_factory, tiny_checkpoint), "JANUS_PROGRESS_INTERVAL": "0.1"}
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=1) as stack:
        yield stack


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url, s3_server, s3_storage_url):
    """The distributed stack's settings with auth on (one worker): (stack, an API key)."""
    env = {**distributed_env(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url, s3_server, s3_storage_url),
           "JANUS_AUTH": "on"}
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=1) as stack:
        yield stack, _make_key(postgres_url)


def _make_key(database_url: str) -> str:
    db = Database(database_url, pooled=False)
    with db.session() as session:
        secret = create_key(session, f"web-{uuid.uuid4().hex[:6]}", tenant=f"web-{uuid.uuid4().hex[:6]}").secret
    db.dispose()
    return secret


def _seen(page) -> dict:
    return page.evaluate("window.__seen")


def _submit_generate(page, prompt: str, num_images: int, seed: int | None = None, cfg_weight: float = 5.0):
    page.fill("#prompt", prompt)
    page.fill("#num-images", str(num_images))
    page.fill("#cfg-weight", str(cfg_weight))
    page.fill("#seed", "" if seed is None else str(seed))
    page.click("#generate-form button[type=submit]")
    card = page.locator(".job-card").first
    expect(card).to_have_attribute("data-job-id", re.compile(".+"))
    return card


# -- the files -----------------------------------------------------------------------------------

def test_page_and_its_files_are_served_with_their_types_and_nothing_from_elsewhere(embedded_stack):
    base = embedded_stack.base_url
    index = requests.get(base + "/", timeout=10)
    assert index.status_code == 200 and index.headers["Content-Type"] == "text/html; charset=utf-8"
    wanted = {"text/javascript": [], "text/css": []}
    for name in _static_names(index.text):
        response = requests.get(f"{base}/static/{name}", timeout=10)
        assert response.status_code == 200, name
        kind = response.headers["Content-Type"].split(";")[0]
        assert kind == {"js": "text/javascript", "css": "text/css"}[name.rsplit(".", 1)[1]], name
        wanted[kind].append(name)
    assert len(wanted["text/javascript"]) == 5 and wanted["text/css"] == ["style.css"]
    for path in WEB_DIR.iterdir():  # no CDN, no font service: every URL is the API's own
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text()), path.name
    for path in ("/static/missing.js", "/static/index.py", "/v1/no-such-thing"):
        response = requests.get(base + path, timeout=10)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", path


def _static_names(html: str) -> set[str]:
    """The files the page loads: those index.html names, and the modules they import, recursively."""
    names, todo = set(), re.findall(r'"/static/([\w.-]+)"', html)
    while todo:
        name = todo.pop()
        if name not in names:
            names.add(name)
            todo += re.findall(r'from "\./([\w.-]+)"', (WEB_DIR / name).read_text())
    return names


def test_every_file_of_the_page_ships_in_the_package():
    globs = tomllib.loads((WEB_DIR.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in WEB_DIR.iterdir():
        assert any(path.match(pattern) for pattern in globs["api"]), path.name


# -- make run's configuration ------------------------------------------------------------------

def test_generate_job_from_the_page_shows_progress_previews_and_images(embedded_stack, page):
    page.goto(embedded_stack.base_url + "/")
    page.fill("#prompt", "   ")  # passes the form's `required`, refused by the API: its error shows
    page.click("#generate-form button[type=submit]")
    expect(page.locator("#error")).to_contain_text("validation_error [422]")
    expect(page.locator("#error")).to_contain_text("field: prompt")

    card = _submit_generate(page, "a red fox in the snow", num_images=2, seed=7, cfg_weight=4.5)
    expect(page.locator("#error")).to_be_hidden()
    expect(card).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    job = embedded_stack.job(card.get_attribute("data-job-id"))
    assert job["status"] == "succeeded"
    assert (job["params"]["seed"], job["params"]["num_images"], job["params"]["cfg_weight"]) == (7, 2, 4.5)
    seen = _seen(page)
    assert "running" in seen["statuses"], seen
    assert any(0 < value < 1 for value in seen["progress"]), seen
    assert seen["previews"] > 0, seen
    page.wait_for_function(ALL_RESULTS_LOADED, arg=".job-card img.result")
    assert page.locator(".job-card img.result").count() == 2
    page.wait_for_function(ALL_RESULTS_LOADED, arg="#gallery img")
    assert page.locator("#gallery img").count() == 2
    screenshot(page, "web-page-generate.png")

    row = page.locator(f'#history tr[data-job-id="{job["id"]}"]')
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(row.locator("a.download")).to_have_count(2)
    with page.expect_download() as download:
        row.locator("a.download").first.click()
    assert Path(download.value.path()).read_bytes().startswith(PNG_SIGNATURE)
    assert download.value.suggested_filename == f"janus-{job['id'][:8]}-0.png"


def test_understand_job_from_the_page_streams_its_answer(embedded_stack, page):
    page.goto(embedded_stack.base_url + "/")
    page.set_input_files("#image", files=[{"name": "red.png", "mimeType": "image/png", "buffer": png_bytes()}])
    page.fill("#question", "What is in this picture?")
    page.fill("#max-new-tokens", "1024")
    # Seeded: the tiny model's answer to this image and question is then ~840 characters (about
    # 0.8 s of decoding, measured); an unseeded one may stop after a few tokens, in one piece.
    page.fill("#understand-seed", "1")
    page.click("#understand-form button[type=submit]")
    card = page.locator(".job-card").first
    expect(card).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    job = embedded_stack.job(card.get_attribute("data-job-id"))
    assert job["params"]["image"]["width"] == 64 and job["params"]["max_new_tokens"] == 1024
    assert job["params"]["seed"] == 1
    expect(card.locator(".answer")).to_have_text(job["result"]["text"])
    # What the output events showed before the end: beginnings of the answer (a character whose
    # bytes were not all decoded yet shows as U+FFFD at the end).
    final = job["result"]["text"]
    partial = [text.rstrip("\ufffd") for text in _seen(page)["answers"] if text and text != final]
    assert partial and all(final.startswith(text) for text in partial), (partial, final)


def test_cancel_from_the_history(embedded_stack, page):
    page.goto(embedded_stack.base_url + "/")
    card = _submit_generate(page, "a long job to cancel", num_images=16)
    job_id = card.get_attribute("data-job-id")
    row = page.locator(f'#history tr[data-job-id="{job_id}"]')
    row.locator("button.cancel").click()
    expect(row).to_have_attribute("data-status", "canceled", timeout=30_000)
    expect(card).to_have_attribute("data-status", "canceled", timeout=30_000)
    assert embedded_stack.job(job_id)["status"] == "canceled"
    expect(row.locator("button.cancel")).to_have_count(0)
    cancel_again = requests.post(f"{embedded_stack.base_url}/v1/jobs/{job_id}/cancel", timeout=10)
    assert cancel_again.status_code == 409


def test_history_pages_through_the_jobs(embedded_stack, page):
    for index in range(3):  # canceled at once: they add rows without keeping the worker busy
        job_id = embedded_stack.submit(type="generate", prompt=f"page filler {index}", num_images=1).json()["id"]
        requests.post(f"{embedded_stack.base_url}/v1/jobs/{job_id}/cancel", timeout=10)
    total = len(requests.get(embedded_stack.base_url + "/v1/jobs?limit=100", timeout=10).json()["data"])
    assert 5 < total <= 10
    page.goto(embedded_stack.base_url + "/")
    page.select_option("#history-limit", "5")
    expect(page.locator("#history tr")).to_have_count(5)
    page.click("#history-more")
    expect(page.locator("#history tr")).to_have_count(total)
    expect(page.locator("#history-more")).to_be_hidden()


# -- PostgreSQL + Redis + S3, auth on -----------------------------------------------------------

def test_with_auth_on_the_key_is_kept_in_the_browser_and_sent_as_a_header(auth_stack, page):
    stack, key = auth_stack
    requests_seen = []
    page.on("request", lambda request: requests_seen.append(request))
    page.goto(stack.base_url + "/")
    expect(page.locator("#error")).to_contain_text("unauthorized [401]")  # the history, without a key
    page.fill("#api-key", "jq_not_a_key")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#error")).to_contain_text("the API key is not valid")

    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#error")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('janusq.apiKey')") == key
    card = _submit_generate(page, "a lighthouse at dusk", num_images=1, seed=3)
    job_id = card.get_attribute("data-job-id")
    expect(card).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function(ALL_RESULTS_LOADED, arg=".job-card img.result")  # signed URL, then S3's
    page.wait_for_function(ALL_RESULTS_LOADED, arg="#gallery img")
    screenshot(page, "web-page-auth.png")

    api_calls = [request for request in requests_seen if "/v1/" in request.url and request.resource_type == "fetch"]
    assert any(call.url.endswith("/events") for call in api_calls)
    assert all(key not in request.url for request in requests_seen)
    with_key = [call for call in api_calls if call.headers.get("authorization") == f"Bearer {key}"]
    assert len(with_key) >= 3  # history, submit, events: none of them before the key was saved

    page.reload()  # the key survives: the history loads with it
    expect(page.locator("#key-state")).to_have_text("key saved in this browser")
    expect(page.locator(f'#history tr[data-job-id="{job_id}"]')).to_have_count(1)
    expect(page.locator("#error")).to_be_hidden()

    # From S3 the image is another origin's, where a link's `download` is ignored: the page asks
    # for ?download=true, and S3 answers with the attachment header the signed redirect named.
    with page.expect_download() as download:
        page.locator(f'#history tr[data-job-id="{job_id}"] a.download').first.click()
    assert download.value.suggested_filename == f"janus-{job_id[:8]}-0.png"
    assert Path(download.value.path()).read_bytes().startswith(PNG_SIGNATURE)
