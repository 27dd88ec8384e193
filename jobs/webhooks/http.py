"""One POST of a webhook delivery, with urllib3: to an address checked against SSRF, no redirects
followed, no retries of its own (the outbox retries), and a time limit."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from jobs.webhooks.addresses import UnsafeWebhook, resolve

USER_AGENT = "janusq-webhooks/1"
ERROR_BODY_BYTES = 200  # of a refusing receiver's answer, kept as the attempt's error


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None  # None: no answer (refused, unreachable, timed out)
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> Outcome:
    try:
        addresses = resolve(url, allow_private, timeout=timeout)  # a hung resolver must not hold the loop
    except UnsafeWebhook as exc:
        return Outcome(error=f"refused: {exc}")
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    # The connection goes to the address just checked, not to the name (looked up again, it could
    # answer otherwise); Host and TLS (SNI, certificate) still use the name.
    pool = _pool(parts.scheme, str(addresses[0]), port, parts.hostname, timeout)
    try:
        response = pool.urlopen("POST", path, body=body, redirect=False, retries=False, preload_content=False,
                                assert_same_host=False,
                                headers={**headers, "Host": parts.netloc.rpartition("@")[2],
                                         "Content-Type": "application/json", "User-Agent": USER_AGENT})
        try:
            status = response.status
            if 200 <= status < 300:
                return Outcome(status)
            text = response.read(ERROR_BODY_BYTES, decode_content=False).decode("utf-8", "replace").strip()
            kind = "redirect (not followed)" if 300 <= status < 400 else "answer"
            return Outcome(status, f"HTTP {status} {kind}" + (f": {text}" if text else ""))
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        return Outcome(error=_reason(exc, timeout))
    finally:
        pool.close()


def _pool(scheme: str, address: str, port: int, hostname: str, timeout: float):
    limits = urllib3.Timeout(total=timeout)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(address, port, timeout=limits, maxsize=1, retries=False,
                                           server_hostname=hostname, assert_hostname=hostname,
                                           cert_reqs="CERT_REQUIRED")
    return urllib3.HTTPConnectionPool(address, port, timeout=limits, maxsize=1, retries=False)


def _reason(exc: Exception, timeout: float) -> str:
    if isinstance(exc, (urllib3.exceptions.TimeoutError, urllib3.exceptions.ReadTimeoutError)):
        return f"no answer within {timeout:g} s"
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}"[:300]
