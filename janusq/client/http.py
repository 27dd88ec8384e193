"""HTTP for the client: urllib3, retries after 429 and 503 honouring Retry-After, typed errors.

urllib3 rather than requests: it is already a pinned runtime dependency of the package
(webhook deliveries use it), so the client adds nothing a user must install, and it streams
server-sent events and encodes multipart uploads by itself.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable

import urllib3

from janusq.client.errors import ConnectionFailedError, error_from_response

RETRY_STATUSES = frozenset({429, 503})
# urllib3's own retrying is off (it knows nothing of Retry-After bodies or idempotency); it only
# follows redirects: an image on S3 is a 307 to a presigned URL. urllib3 drops Authorization on a
# redirect to another host, which S3 would otherwise refuse.
_URLLIB3_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5,
                                 raise_on_redirect=False, raise_on_status=False)


@dataclass
class Backoff:
    """How often and how long to wait before trying again: Retry-After when the API sends one,
    else exponential from `base`; always at most `cap` seconds, `retries` times at most."""

    retries: int = 5
    base: float = 0.5
    cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        # Full jitter: clients throttled together do not come back together.
        return min(self.cap, self.base * 2 ** attempt) * random.uniform(0.5, 1.0)


class Transport:
    """One connection pool to one API; every request of a Client goes through `request`."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, backoff: Backoff,
                 user_agent: str):
        self.base_url = base_url.rstrip("/")
        self.headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout, self.backoff = timeout, backoff
        self.pool = urllib3.PoolManager(retries=_URLLIB3_RETRIES)

    def url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else self.base_url + path_or_url

    def request(self, method: str, path: str, *, json_body: Any = None, fields: dict | None = None,
                headers: dict | None = None, query: dict | None = None, retry_connect: bool = False,
                timeout: float | None = None) -> urllib3.BaseHTTPResponse:
        """The answer of a 2xx or 3xx; a JanusError otherwise. 429 and 503 are retried after
        Retry-After (capped); a connection failure only when `retry_connect` (the request is safe
        to repeat: a GET, or a submit with an Idempotency-Key)."""
        attempt = 0
        while True:
            try:
                response = self._send(method, path, json_body, fields, headers, query, timeout)
            except urllib3.exceptions.HTTPError as exc:
                if not retry_connect or _never_connected(exc) or attempt >= self.backoff.retries:
                    raise self._unreachable(exc) from None
                retry_after = None
            else:
                if response.status < 400:
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if response.status not in RETRY_STATUSES or attempt >= self.backoff.retries:
                    raise error_from_response(response.status, response.data, retry_after)
            self.backoff.sleep(self.backoff.delay(attempt, retry_after))
            attempt += 1

    def json(self, method: str, path: str, **kwargs) -> Any:
        return json.loads(self.request(method, path, **kwargs).data)

    def _send(self, method, path, json_body, fields, headers, query, timeout) -> urllib3.BaseHTTPResponse:
        # urllib3's `fields` is a multipart form, or the query string of a GET.
        body = {"fields": fields} if fields is not None else {"fields": query} if query else {"json": json_body}
        return self.pool.request(method, self.url(path), headers={**self.headers, **(headers or {})},
                                 timeout=self._timeout(timeout or self.timeout), **body)

    def _timeout(self, read: float) -> urllib3.Timeout:
        return urllib3.Timeout(connect=min(self.timeout, 10.0), read=read)

    def _unreachable(self, exc: Exception) -> ConnectionFailedError:
        return ConnectionFailedError(f"cannot reach {self.base_url}: {_reason(exc)}", code="connection_error")

    def stream(self, path: str, headers: dict, read_timeout: float) -> urllib3.BaseHTTPResponse:
        """An unread streaming answer (the event stream); errors as `request` raises them."""
        try:
            response = self.pool.request("GET", self.url(path), headers={**self.headers, **headers},
                                         preload_content=False, timeout=self._timeout(read_timeout))
        except urllib3.exceptions.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status >= 400:
            data = response.read()
            response.release_conn()
            raise error_from_response(response.status, data, parse_retry_after(response.headers.get("Retry-After")))
        return response


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After's seconds, or its HTTP date as seconds from now (RFC 9110); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _never_connected(exc: Exception) -> bool:
    # Refused, or no such host: nothing was sent, and trying again at once will not change it;
    # a connection reset or timed out mid-request is what a retry is for.
    return isinstance(getattr(exc, "reason", exc), urllib3.exceptions.NewConnectionError)


def _reason(exc: Exception) -> str:
    # MaxRetryError wraps the interesting part (NewConnectionError: Connection refused).
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    return text.split(": ", 1)[-1] if "Failed to establish" in text else text

