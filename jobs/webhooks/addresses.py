"""Which webhook URLs may be called: the SSRF guard.

A webhook is refused when its host resolves to any address that is not globally routable
(private, loopback, link-local, shared, reserved, documentation, multicast, unspecified), unless
JANUS_WEBHOOK_ALLOW_PRIVATE is on. The API checks at create; the deliverer checks again before
each attempt and then connects to the address it checked (DNS may have changed meanwhile, and a
second lookup could answer differently).
"""
from __future__ import annotations

import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor, TimeoutError as LookupTimeout
from urllib.parse import urlsplit

SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# getaddrinfo has no timeout of its own and a slow resolver can take 20 s or more; lookups with
# a time limit run on these threads so the caller (an API request thread) stops waiting at the
# limit. A lookup still running then finishes on its thread; four bound how many can pile up.
_lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


class UnsafeWebhook(ValueError):
    """The URL may not be called; the message says why, in one line."""


def url_problem(url: str) -> str | None:
    """Why `url` is not a usable webhook URL (syntax only), or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in SCHEMES or not parts.hostname:
        return "must be an absolute http:// or https:// URL"
    if parts.fragment or any(ord(char) <= 32 or ord(char) == 127 for char in url):
        return "must have no fragment, spaces or control characters"
    return None


def forbidden(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def resolve(url: str, allow_private: bool, timeout: float | None = None) -> list[Address]:
    """The addresses to connect to for `url`, each allowed; UnsafeWebhook when none may be used,
    or when the name did not resolve within `timeout` seconds (None: wait as long as DNS takes)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = _lookup(parts.hostname, port, timeout)
    except LookupTimeout:  # first: it is the builtin TimeoutError, an OSError
        raise UnsafeWebhook(f"host {parts.hostname!r} did not resolve within {timeout:g} s") from None
    except (OSError, UnicodeError) as exc:  # gaierror and its kin; an IDNA label too long
        raise UnsafeWebhook(f"host {parts.hostname!r} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in found))
    if not allow_private:
        refused = [address for address in addresses if forbidden(address)]
        if refused:
            # One bad address refuses the host: a name that also points inward is not safe to call.
            raise UnsafeWebhook(f"host {parts.hostname!r} resolves to {refused[0]}, a private, loopback or "
                                "link-local address (JANUS_WEBHOOK_ALLOW_PRIVATE=true allows it)")
    return addresses


def _lookup(host: str, port: int, timeout: float | None) -> list:
    if timeout is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return _lookups.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(timeout)
