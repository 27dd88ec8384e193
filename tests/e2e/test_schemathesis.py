"""Schemathesis against /openapi.json of a running API with a valid (admin) key: no 5xx, no response
that breaks the documented schema, statuses, headers or content types, and no operation that
works without the key it declares (ignored_auth).

Two of schemathesis' checks are left out because they test the document's precision rather
than the API's safety: positive_data_acceptance (a schema-valid but meaningless cursor or image
is rightly refused with 422) and negative_data_rejection (an empty query parameter such as
`?type=` counts as absent, as documented). Bounded: 10 examples per operation, a fixed seed.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.stack import Stack

EXCLUDED_CHECKS = "positive_data_acceptance,negative_data_rejection"
# The stack has no workers, so the OpenAI-compatible endpoints' valid requests end in their
# documented 504 job_not_finished: expected here, and only there. Their nested request bodies
# would give the coverage phase hundreds of cases (each a job): fuzzing and stateful cover them.
NO_WORKERS_CONFIG = """
[[operations]]
include-operation-id = ["createImages", "createChatCompletion"]
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "504"]
phases.coverage.enabled = false

# A queued job's event stream stays open (pings) while no worker runs it: each one schemathesis
# opened held 30 s, past the whole test's time limit; 2 s shows the stream's start.
[[operations]]
include-operation-id = ["streamJobEvents"]
request-timeout = 2
"""


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory, tiny_checkpoint):
    var = tmp_path_factory.mktemp("var")
    shutil.copytree(tiny_checkpoint, var / "models" / "janus-tiny")
    env = {"JANUS_DATA_DIR": str(var), "JANUS_MODEL": "tiny", "JANUS_AUTH": "on",
           # schemathesis sends hundreds of requests a minute; 429 is tested elsewhere.
           "JANUS_RATE_LIMIT_PER_MINUTE": "0",
           # No workers: the OpenAI-compatible endpoints answer 504 at once rather than wait.
           "JANUS_MAX_WAIT_SECONDS": "0"}
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=0) as stack:
        yield stack


def test_schemathesis_finds_no_server_error_or_schema_violation(keyed_stack, tmp_path):
    # An admin key, so that GET /v1/workers is exercised too (for jobs it is like any other key).
    created = subprocess.run([sys.executable, "-m", "janusq", "keys", "create", "--name", "schemathesis", "--admin"],
                             env=keyed_stack.env, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    schemathesis = Path(sys.executable).with_name("schemathesis")
    (tmp_path / "schemathesis.toml").write_text(NO_WORKERS_CONFIG)
    result = subprocess.run(
        [str(schemathesis), "--config-file", str(tmp_path / "schemathesis.toml"),
         "run", f"{keyed_stack.base_url}/openapi.json",
         "--header", f"Authorization: Bearer {key}",
         "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
         "--max-examples", "10", "--seed", "20261126", "--workers", "1",
         "--request-timeout", "20", "--no-color"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:] + "\n" + keyed_stack.logs()
    assert "passed" in output and "failed" not in output.split("SUMMARY")[-1]
