"""What the API's routes use, built once per app by the factory (nothing connects until used)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from flask import current_app

from jobs.db import Database
from jobs.queue import Publisher
from jobs.settings import Settings
from jobs.storage import Storage, open_storage


@dataclass
class Services:
    settings: Settings
    db: Database = field(init=False)
    publisher: Publisher = field(init=False)

    def __post_init__(self):
        self.db = Database(self.settings.database)
        self.publisher = Publisher(self.settings)

    @cached_property
    def storage(self) -> Storage:
        return open_storage(self.settings.storage, self.settings.s3_endpoint_url,
                            public_endpoint_url=self.settings.s3_public_url)

    @cached_property
    def prompt_budget(self):
        """Token limits of the configured checkpoint, read from its tokenizer and config only."""
        from janus_model.budget import PromptBudget

        return PromptBudget.from_checkpoint(self.settings.model_source)


def services() -> Services:
    return current_app.extensions["janus"]
