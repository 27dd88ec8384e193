"""A create request's webhook: the URL checked against SSRF, its events, and the API's address."""
from __future__ import annotations

from dataclasses import dataclass

from api.errors import ApiError
from jobs.webhooks.addresses import UnsafeWebhook, resolve
from jobs.webhooks.outbox import DEFAULT_EVENTS

# How long a create request waits for its webhook's host to resolve: a request thread is held
# meanwhile, and a host that slow to resolve would fail its deliveries' lookups too.
RESOLVE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Webhook:
    url: str
    events: list[str]

    def fingerprint_fields(self) -> dict:
        """Beyond its params, what makes a request with this webhook differ (Idempotency-Key)."""
        return {"webhook": self.url, "webhook_events": self.events}

    def job_fields(self, root: str) -> dict:
        """The job's columns; `root`, the API address the request came to, makes the links in a
        delivery's body absolute, as in the create response."""
        return {"webhook": self.url, "webhook_events": self.events, "webhook_root": root}


def for_create(job_request, allow_private: bool) -> Webhook | None:
    """The request's webhook (None without one); 422 when its host may not be called or does not
    resolve within RESOLVE_TIMEOUT_SECONDS."""
    if job_request.webhook is None:
        return None
    if not allow_private:
        try:
            resolve(job_request.webhook, allow_private=False, timeout=RESOLVE_TIMEOUT_SECONDS)
        except UnsafeWebhook as exc:
            raise ApiError.of("validation_error", f"webhook: {exc}", "webhook") from None
    return Webhook(job_request.webhook, list(job_request.webhook_events or DEFAULT_EVENTS))


def for_retry(original) -> dict:
    """A retry keeps the original's webhook (checked again at each delivery)."""
    return {"webhook": original.webhook, "webhook_events": original.webhook_events,
            "webhook_root": original.webhook_root}
