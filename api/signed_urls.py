"""Signed image URLs in the API (the signing itself: jobs/url_signing.py).

With auth on, a job's image URLs carry `?expires=...&signature=...`, so they work without the
API key (an <img> tag, a link handed on) for JANUS_URL_TTL seconds. A request to the image route
with a signature is judged by it alone, key or no key: valid and unexpired, it is served (the
signature names the job and index; its tenant is not asked); otherwise 403.
"""
from __future__ import annotations

from typing import Callable

from flask import g, request

from api.errors import ApiError
from jobs.url_signing import SignatureExpired, SignatureInvalid

IMAGE_ENDPOINT = "jobs_api.get_image"


def is_signed_image_request() -> bool:
    """A `signature` makes it one; without it (a stray `expires` too) the request needs the key."""
    return request.endpoint == IMAGE_ENDPOINT and "signature" in request.args


def admit_signed_request(svc) -> None:
    """403 unless the URL's signature is valid and unexpired; then the request needs no key."""
    try:
        svc.url_signer.verify(request.path, request.args.get("expires"), request.args.get("signature"))
    except SignatureExpired as exc:
        raise ApiError.of("signature_expired", f"{exc}; GET the job again for fresh image URLs", "expires") from None
    except SignatureInvalid as exc:
        raise ApiError.of("invalid_signature", str(exc), "signature") from None
    g.tenant, g.api_key_id, g.admin, g.signed_url = None, None, False, True


def image_signer(svc) -> Callable[[str], str] | None:
    """What signs image paths in job JSON: only with auth on (without it, the plain URL works).
    The key is looked up when the first image is signed, not for jobs without images."""
    if not svc.settings.auth_enabled:
        return None
    return lambda path: svc.url_signer.query(path)
