"""Result and upload storage behind one small interface: a local folder or an S3 bucket.

`open_storage(settings.storage, settings.s3_endpoint_url)` picks the implementation from the
URL. Keys are relative, slash-separated paths such as `jobs/<id>/0.png`; the same key rules
apply to both implementations so that a key that works locally works on S3 and vice versa.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

__all__ = [
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "open_storage",
    "validate_key",
]


class StorageError(Exception):
    """Storage is unreachable or an operation on it failed; the message says what."""


@runtime_checkable
class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes:
        """The stored bytes; KeyError if there is no such key."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete every key that starts with `prefix` (plain string prefix, as in S3)."""
        ...

    def presigned_url(self, key: str, ttl_seconds: int, download_as: str | None = None) -> str | None:
        """A URL a client can GET without credentials, or None if the API must stream it;
        `download_as` makes the response an attachment of that file name."""
        ...

    def check(self) -> None:
        """Raise StorageError unless the store is reachable and writable (for /readyz)."""
        ...


def validate_key(key: str, *, prefix: bool = False) -> str:
    """Return `key` if it is a safe relative key, else raise ValueError.

    A prefix may end with a slash (`jobs/<id>/`); a key may not.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("storage key must be a non-empty string")
    if "\x00" in key or "\\" in key:
        raise ValueError(f"storage key {key!r} contains a NUL or a backslash")
    if key.startswith("/"):
        raise ValueError(f"storage key {key!r} must be relative")
    parts = key.split("/")
    if prefix and parts[-1] == "":
        parts = parts[:-1]
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"storage key {key!r} has an empty, '.' or '..' segment")
    return key


def open_storage(
    url: str,
    endpoint_url: str | None = None,
    *,
    public_endpoint_url: str | None = None,
) -> Storage:
    """file:///abs/path -> LocalStorage; s3://bucket[/prefix] -> S3Storage.

    `endpoint_url` points boto3 at MinIO or moto; `public_endpoint_url`, if given, is the
    host put into presigned URLs (when clients reach S3 under another name than the workers).
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"storage URL {url!r}: use file:///absolute/path")
        path = unquote(parsed.path)
        if not os.path.isabs(path):
            raise ValueError(f"storage URL {url!r}: the path must be absolute")
        return LocalStorage(path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"storage URL {url!r}: needs a bucket, s3://bucket/prefix")
        return S3Storage(
            parsed.netloc,
            unquote(parsed.path),
            endpoint_url=endpoint_url,
            public_endpoint_url=public_endpoint_url,
        )
    raise ValueError(f"storage URL {url!r}: must be file:///path or s3://bucket/prefix")


class LocalStorage:
    """Files under one folder. The API streams these itself, so there are no URLs."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(root))
        # Best effort: a root that cannot be created is reported by check() and by each
        # operation, so an API process can still start and say "not ready".
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str, *, prefix: bool = False) -> Path:
        validate_key(key, prefix=prefix)
        path = self.root / key
        # Symlinks inside the root could still point outside it.
        real_root = os.path.realpath(self.root)
        if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            raise ValueError(f"storage key {key!r} resolves outside {self.root}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, data)
        except OSError as exc:
            raise StorageError(f"cannot write {key!r} under {self.root}: {exc}") from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r} under {self.root}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix, prefix=True)
        try:
            if prefix.endswith("/"):
                _remove(path)
                return
            # S3 semantics: "jobs/ab" also matches "jobs/abc/..." and "jobs/ab.png".
            if path.parent.is_dir():
                for entry in path.parent.iterdir():
                    if entry.name.startswith(path.name):
                        _remove(entry)
        except OSError as exc:
            raise StorageError(f"cannot delete {prefix!r} under {self.root}: {exc}") from exc

    def presigned_url(self, key: str, ttl_seconds: int, download_as: str | None = None) -> str | None:
        self._path(key)
        return None

    def check(self) -> None:
        probe = self.root / f".check-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _write_atomically(probe, b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"local storage {self.root} is not writable: {exc}") from exc


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, then rename, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class S3Storage:
    """Objects in one bucket under an optional prefix (S3, MinIO, moto)."""

    # A down endpoint should fail a request in seconds (for /readyz and for jobs), not after
    # botocore's default 60 s timeouts times its retries.
    CONNECT_TIMEOUT = 2
    READ_TIMEOUT = 30
    TOTAL_ATTEMPTS = 3  # the first try and two retries

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.endpoint_url = endpoint_url or None
        self.public_endpoint_url = public_endpoint_url or None
        # Clients are made on first use and per process: a client created before a fork
        # would share its connection pool with the child.
        self._lock = threading.Lock()
        self._clients: dict[str | None, object] = {}
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def client(self):
        """The boto3 S3 client of this process."""
        return self._client_for(self.endpoint_url)

    def _client_for(self, endpoint_url: str | None):
        pid = os.getpid()
        if self._pid != pid:
            # New process (or first use). The parent's lock is replaced too: a fork while
            # another thread held it would leave it locked for good in the child.
            self._lock = threading.Lock()
            self._clients = {}
            self._pid = pid
        with self._lock:
            client = self._clients.get(endpoint_url)
            if client is None:
                client = self._clients[endpoint_url] = self._make_client(endpoint_url)
            return client

    def _make_client(self, endpoint_url: str | None):
        import boto3
        from botocore.config import Config

        # A fresh session: boto3's default session is shared module state, not fork-safe.
        session = boto3.session.Session()
        config = Config(
            connect_timeout=self.CONNECT_TIMEOUT,
            read_timeout=self.READ_TIMEOUT,
            retries={"total_max_attempts": self.TOTAL_ATTEMPTS, "mode": "standard"},
            signature_version="s3v4",
            # MinIO and moto serve buckets as paths, not as subdomains of the endpoint.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        return session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=session.region_name or "us-east-1",
            config=config,
        )

    def _key(self, key: str, *, prefix: bool = False) -> str:
        validate_key(key, prefix=prefix)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, action: str, key: str = "") -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"{self.url}/{key}" if key else self.url
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "?")
            message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", ""
            )
            raise StorageError(f"S3 {action} {where} failed: {code} {message}".rstrip()) from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {action} {where} failed: {exc}") from exc

    def put(self, key: str, data: bytes, content_type: str) -> None:
        full = self._key(key)
        with self._errors("put", key):
            self.client.put_object(
                Bucket=self.bucket, Key=full, Body=data, ContentType=content_type
            )

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        full = self._key(key)
        with self._errors("get", key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if _is_missing_key(exc):
                    raise KeyError(key) from None
                raise
            return response["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        full = self._key(key)
        with self._errors("head", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if _is_missing_key(exc):
                    return False
                raise
            return True

    def delete_prefix(self, prefix: str) -> None:
        full = self._key(prefix, prefix=True)
        with self._errors("delete", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not objects:
                    continue
                # A listing page holds at most 1000 keys, the most one delete call takes.
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                )
                if response.get("Errors"):
                    first = response["Errors"][0]
                    raise StorageError(
                        f"S3 delete {self.url}/{prefix} failed for {len(response['Errors'])}"
                        f" objects, e.g. {first.get('Key')}: {first.get('Code')}"
                        f" {first.get('Message', '')}".rstrip()
                    )

    def presigned_url(self, key: str, ttl_seconds: int, download_as: str | None = None) -> str | None:
        full = self._key(key)
        params = {"Bucket": self.bucket, "Key": full}
        if download_as:  # S3 answers with this header instead of the object's own (none)
            params["ResponseContentDisposition"] = attachment(download_as)
        # Signing is local (no request); the host is part of the signature, so a public
        # endpoint needs its own client.
        client = self._client_for(self.public_endpoint_url or self.endpoint_url)
        with self._errors("presign", key):
            return client.generate_presigned_url(
                "get_object",
                Params=params,
                ExpiresIn=int(ttl_seconds),
            )

    def check(self) -> None:
        from botocore.exceptions import ClientError

        probe = self._key(".check")
        with self._errors("check"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    where = self.endpoint_url or "AWS"
                    raise StorageError(f"S3 bucket {self.bucket!r} does not exist at {where}") from exc
                raise
            # Reachable is not enough: credentials may be read-only. One small object,
            # overwritten on each check, proves writes work.
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")


def _is_missing_key(exc) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    # HEAD responses have no body, so a missing key shows only as a bare 404.
    return error.get("Code") in ("NoSuchKey", "404", "NotFound") or (
        status == 404 and error.get("Code") != "NoSuchBucket"
    )


def attachment(filename: str) -> str:
    """A Content-Disposition that makes browsers save the response as `filename` (ASCII)."""
    return f'attachment; filename="{filename}"'
