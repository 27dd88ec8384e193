"""What the API's routes use, built once per app by the factory (nothing connects until used)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

from flask import current_app

from api.errors import ApiError
from jobs.db import Database
from jobs.events import attach_event_log
from jobs.oneline import first_line
from jobs.queue import Publisher
from jobs.settings import Settings
from jobs.storage import Storage, open_storage

# After the model's tokenizer could not be read, requests (and /readyz) answer 503 from memory
# for this long before trying again: an unreachable hub costs each try tens of seconds.
BUDGET_RETRY_SECONDS = 10.0


@dataclass
class Services:
    settings: Settings
    db: Database = field(init=False)
    publisher: Publisher = field(init=False)

    def __post_init__(self):
        self._prompt_budget = None
        self._budget_error, self._budget_failed_at = None, 0.0
        # By default a connection per gunicorn thread: each request holds at most one session at
        # a time, and a smaller pool would open and close a PostgreSQL connection per extra request.
        self.db = attach_event_log(Database(self.settings.database, pool_size=self.settings.api_db_pool_size,
                                            max_overflow=self.settings.db_max_overflow), self.settings)
        self.publisher = Publisher(self.settings)
        # Built here, not lazily: each holds state that every request thread must share, and from
        # Python 3.12 on cached_property takes no lock, so two first requests could each build one
        # (waiters parked in a discarded WaitRoom would wake only at their timeout). None connects.
        self.waits = self._wait_room()
        self.event_watch = self._event_watch()
        self.key_cache = self._key_cache()
        self.rate_limiter = self._rate_limiter()

    # Lazy (they may connect); two threads that each build one get equal, stateless objects.
    @cached_property
    def storage(self) -> Storage:
        return open_storage(self.settings.storage, self.settings.s3_endpoint_url,
                            public_endpoint_url=self.settings.s3_public_url)

    @cached_property
    def url_signer(self):
        """Signs and checks image URLs; the key is read (or made) in the database on first use."""
        from jobs.url_signing import UrlSigner, signing_key

        return UrlSigner(signing_key(self.settings.url_signing_key, self.db), self.settings.url_ttl)

    def _wait_room(self):
        """This process's waiting requests (Prefer: wait): capped, and woken by one watcher."""
        from api.waits import WaitRoom

        return WaitRoom(self.db, self.settings.waiting_capacity)

    def _event_watch(self):
        """This process's event streams' one watcher (api/event_watch.py)."""
        from api.event_watch import EventWatch

        return EventWatch(self.db.events)

    def _key_cache(self):
        from api.auth import KeyCache

        return KeyCache(self.settings.api_key_cache_seconds)

    def _rate_limiter(self):
        from api.ratelimit import open_rate_limiter

        return open_rate_limiter(self.settings.rate_limit_redis, self.settings.rate_limit_per_minute)

    @property
    def prompt_budget(self):
        """Token limits of the configured checkpoint, read from its tokenizer and config only.

        Loaded on first use and kept; if the checkpoint cannot be read yet (a hub id with the
        hub unreachable) requests get a 503 and the next one tries again.
        """
        if self._prompt_budget is None:
            if self._budget_error is not None and time.monotonic() - self._budget_failed_at < BUDGET_RETRY_SECONDS:
                raise self._budget_error  # a hub that timed out is not asked again on every request
            try:
                self._prompt_budget = self._read_budget()
            except (OSError, ValueError, KeyError) as exc:
                self._budget_failed_at = time.monotonic()
                self._budget_error = ApiError.of("unavailable", f"the model's tokenizer could not be read: "
                                                 f"{first_line(exc)}",
                                                 "model")
                raise self._budget_error from None
        return self._prompt_budget

    def _read_budget(self):
        if self.settings.is_simulated_model:  # no tokenizer: the simulated model's own rough count
            from janus_model.simulated import load_simulated

            return load_simulated(self.settings.model).budget
        from janus_model.budget import PromptBudget

        return PromptBudget.from_checkpoint(self.settings.model_source)


def services() -> Services:
    return current_app.extensions["janus"]
