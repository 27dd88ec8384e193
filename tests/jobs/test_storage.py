"""Both storage implementations through the same tests; S3 is moto's server over HTTP."""
from __future__ import annotations

import os
import time
import uuid

import pytest
import requests

from jobs.storage import LocalStorage, S3Storage, Storage, StorageError, open_storage
from tests.s3server import MotoServer, create_bucket, free_port, s3_client

BAD_KEYS = ["../x", "jobs/../../x", "/etc/passwd", "jobs//x", "jobs/./x", "", "jobs\\x"]


def new_bucket(server: MotoServer) -> str:
    name = f"janus-{uuid.uuid4().hex[:12]}"
    create_bucket(server.endpoint_url, name)
    return name


@pytest.fixture(params=["local", "s3", "s3-no-prefix"])
def store(request, tmp_path) -> Storage:
    if request.param == "local":
        return open_storage(f"file://{tmp_path / 'store'}")
    server = request.getfixturevalue("moto_server")
    bucket = new_bucket(server)
    prefix = "/results" if request.param == "s3" else ""
    return open_storage(f"s3://{bucket}{prefix}", endpoint_url=server.endpoint_url)


@pytest.fixture
def s3_store(moto_server) -> S3Storage:
    bucket = new_bucket(moto_server)
    return open_storage(f"s3://{bucket}/results", endpoint_url=moto_server.endpoint_url)


def test_open_storage_picks_the_implementation(tmp_path):
    local = open_storage(f"file://{tmp_path / 'a' / 'b'}")
    assert isinstance(local, LocalStorage) and isinstance(local, Storage)
    assert (tmp_path / "a" / "b").is_dir()  # the folder is created

    s3 = open_storage("s3://bucket/some/prefix/", endpoint_url="http://127.0.0.1:1")
    assert isinstance(s3, S3Storage) and isinstance(s3, Storage)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("bucket", "some/prefix", "http://127.0.0.1:1")


@pytest.mark.parametrize(
    "url", ["file://relative/path", "file:relative", "s3:///prefix", "gs://bucket/x", "/abs/path"]
)
def test_open_storage_rejects_bad_urls(url):
    with pytest.raises(ValueError):
        open_storage(url)


def test_round_trip(store):
    store.put("jobs/a/0.png", b"\x89PNG first", "image/png")
    store.put("jobs/a/input", b"upload", "application/octet-stream")
    store.put("jobs/ab/0.png", b"neighbour", "image/png")
    store.put("jobs/b/0.png", b"other", "image/png")

    assert store.get("jobs/a/0.png") == b"\x89PNG first"
    assert store.get("jobs/a/input") == b"upload"
    assert store.exists("jobs/a/0.png") and store.exists("jobs/ab/0.png")

    store.put("jobs/a/0.png", b"second", "image/png")  # overwrite
    assert store.get("jobs/a/0.png") == b"second"

    store.delete_prefix("jobs/a/")
    assert not store.exists("jobs/a/0.png") and not store.exists("jobs/a/input")
    with pytest.raises(KeyError):
        store.get("jobs/a/0.png")
    assert store.get("jobs/ab/0.png") == b"neighbour"  # "jobs/a/" is not "jobs/a..."
    assert store.get("jobs/b/0.png") == b"other"

    store.delete_prefix("jobs/a/")  # nothing left: no error
    store.delete_prefix("jobs/nothing-here/")


def test_delete_prefix_without_slash_matches_like_s3(store):
    for key in ("jobs/ab/0.png", "jobs/abc/0.png", "jobs/ab.png", "jobs/b/0.png"):
        store.put(key, b"x", "image/png")
    store.delete_prefix("jobs/ab")
    assert [store.exists(k) for k in ("jobs/ab/0.png", "jobs/abc/0.png", "jobs/ab.png")] == [
        False,
        False,
        False,
    ]
    assert store.exists("jobs/b/0.png")


def test_delete_prefix_many_objects(store):
    # More than one listing page would need moto to page; 30 keys still catch a loop that
    # deletes only the first object.
    for i in range(30):
        store.put(f"jobs/many/{i}.png", b"x", "image/png")
    store.delete_prefix("jobs/many/")
    assert not any(store.exists(f"jobs/many/{i}.png") for i in range(30))


def test_missing_key(store):
    with pytest.raises(KeyError):
        store.get("jobs/none/0.png")
    assert not store.exists("jobs/none/0.png")
    store.put("jobs/dir/0.png", b"x", "image/png")
    with pytest.raises(KeyError):
        store.get("jobs/dir")  # a "folder" is not a key
    assert not store.exists("jobs/dir")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_escaping_the_root_are_rejected(store, key, tmp_path):
    with pytest.raises(ValueError):
        store.put(key, b"evil", "text/plain")
    with pytest.raises(ValueError):
        store.get(key)
    with pytest.raises(ValueError):
        store.exists(key)
    with pytest.raises(ValueError):
        store.presigned_url(key, 60)
    with pytest.raises(ValueError):
        store.delete_prefix(key if key else "")
    assert not (tmp_path / "x").exists()


def test_local_rejects_symlink_out_of_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store = open_storage(f"file://{tmp_path / 'store'}")
    os.symlink(outside, tmp_path / "store" / "link")
    with pytest.raises(ValueError):
        store.put("link/x.png", b"evil", "image/png")
    assert list(outside.iterdir()) == []


def test_local_write_is_atomic(tmp_path, monkeypatch):
    store = open_storage(f"file://{tmp_path / 'store'}")
    store.put("jobs/a/0.png", b"old", "image/png")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StorageError, match="No space left"):
        store.put("jobs/a/0.png", b"new and longer", "image/png")
    monkeypatch.undo()

    assert store.get("jobs/a/0.png") == b"old"  # never a half-written file
    assert os.listdir(tmp_path / "store" / "jobs" / "a") == ["0.png"]  # no temp file left


def test_s3_stores_content_type_under_the_prefix(s3_store, moto_server):
    s3_store.put("jobs/a/0.png", b"png", "image/png")
    s3_store.put("jobs/a/input", b"raw", "application/octet-stream")
    client = s3_client(moto_server.endpoint_url)
    head = client.head_object(Bucket=s3_store.bucket, Key="results/jobs/a/0.png")
    assert head["ContentType"] == "image/png"
    assert head["ContentLength"] == 3
    head = client.head_object(Bucket=s3_store.bucket, Key="results/jobs/a/input")
    assert head["ContentType"] == "application/octet-stream"


def test_s3_presigned_url_downloads_and_expires(s3_store):
    s3_store.put("jobs/a/0.png", b"\x89PNG bytes", "image/png")

    url = s3_store.presigned_url("jobs/a/0.png", 60)
    response = requests.get(url, timeout=10)  # no credentials: the URL carries them
    assert response.status_code == 200
    assert response.content == b"\x89PNG bytes"
    assert response.headers["Content-Type"] == "image/png"

    short = s3_store.presigned_url("jobs/a/0.png", 1)
    assert requests.get(short, timeout=10).status_code == 200
    time.sleep(2)
    assert requests.get(short, timeout=10).status_code == 403


def test_s3_presigned_url_uses_the_public_endpoint(moto_server):
    # Workers reach S3 as 127.0.0.1; clients are told "localhost" (as with minio:9000 inside
    # compose and a public host outside). The URL must be signed for the public host.
    bucket = new_bucket(moto_server)
    public = moto_server.endpoint_url.replace("127.0.0.1", "localhost")
    store = open_storage(
        f"s3://{bucket}/results", moto_server.endpoint_url, public_endpoint_url=public
    )
    store.put("jobs/a/0.png", b"bytes", "image/png")
    url = store.presigned_url("jobs/a/0.png", 60)
    assert url.startswith(f"{public}/{bucket}/results/jobs/a/0.png?")
    assert requests.get(url, timeout=10).content == b"bytes"


def test_local_presigned_url_is_none(tmp_path):
    store = open_storage(f"file://{tmp_path / 'store'}")
    store.put("jobs/a/0.png", b"x", "image/png")
    assert store.presigned_url("jobs/a/0.png", 60) is None


def test_check_passes_on_a_good_store(store):
    store.check()
    store.check()


def test_local_check_fails_on_an_unwritable_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")
    store = open_storage(f"file://{blocker / 'store'}")  # opening does not raise
    with pytest.raises(StorageError, match="not writable"):
        store.check()
    with pytest.raises(StorageError):
        store.put("jobs/a/0.png", b"x", "image/png")


def test_s3_check_fails_on_a_missing_bucket(moto_server):
    store = open_storage("s3://no-such-bucket/results", moto_server.endpoint_url)
    with pytest.raises(StorageError, match="no-such-bucket"):
        store.check()
    with pytest.raises(StorageError):
        store.get("jobs/a/0.png")  # a missing bucket is an outage, not a missing key


def test_s3_down_fails_fast_with_storage_error(aws_test_env):
    server = MotoServer(enforce_expiry=False).start()  # plain `python -m moto.server`
    bucket = new_bucket(server)
    store = open_storage(f"s3://{bucket}/results", server.endpoint_url)
    store.put("jobs/a/0.png", b"x", "image/png")
    store.check()
    server.stop()

    started = time.monotonic()
    for call in (
        store.check,
        lambda: store.get("jobs/a/0.png"),
        lambda: store.exists("jobs/a/0.png"),
        lambda: store.put("jobs/a/1.png", b"x", "image/png"),
        lambda: store.delete_prefix("jobs/a/"),
    ):
        with pytest.raises(StorageError, match="Could not connect"):
            call()
    assert time.monotonic() - started < 15


def test_s3_client_is_lazy_and_per_process(aws_test_env):
    # Nothing listens here: constructing must not connect.
    store = open_storage("s3://bucket/results", f"http://127.0.0.1:{free_port()}")
    assert store.presigned_url("jobs/a/0.png", 60)  # signing needs no connection
    parent_client = store.client
    assert store.client is parent_client
    # A black-holed endpoint must fail in seconds, not botocore's 60 s per try.
    config = parent_client.meta.config
    assert config.connect_timeout <= 5 and config.retries["total_max_attempts"] <= 4

    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's client and connection pool
        os._exit(0 if store.client is not parent_client else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
