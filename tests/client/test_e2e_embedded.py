"""The SDK and CLI against `make run`'s configuration (SQLite, embedded broker, local files; auth off)."""
from __future__ import annotations

import pytest

from tests.client.e2e_cases import *  # noqa: F401,F403 - the shared cases, run against this stack
from tests.e2e.conftest import embedded_stack  # noqa: F401 - the fixture, shared with tests/e2e


@pytest.fixture(scope="module")
def service(embedded_stack):  # noqa: F811
    return embedded_stack.base_url, None
