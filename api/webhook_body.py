"""The body of a webhook delivery: the job as GET /v1/jobs/<id> shows it, made outside a request
(by the delivery loop in a worker or `janusq sweeper`), from the same settings and keys."""
from __future__ import annotations

from functools import cache

from api.serialize import job_to_dict
from jobs.db import Database
from jobs.settings import Settings


def body_renderer(settings: Settings, db: Database):
    """render(job, root) -> dict, with expires_at and, with auth on, signed image URLs (valid
    JANUS_URL_TTL seconds from the attempt: a receiver can fetch the images without a key)."""

    @cache
    def signer():
        from jobs.url_signing import UrlSigner, signing_key

        return UrlSigner(signing_key(settings.url_signing_key, db), settings.url_ttl)

    def render(job, root: str) -> dict:
        sign = (lambda path: signer().query(path)) if settings.auth_enabled else None
        return job_to_dict(job, root, result_ttl=settings.result_ttl, sign=sign)

    return render
