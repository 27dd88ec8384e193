"""The client runs on a laptop without the server's stack: importing it (and its CLI, through
`janusq submit`/`jobs`) must not need torch, Flask, Celery, SQLAlchemy or pydantic."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

SERVER_ONLY = ["torch", "transformers", "flask", "celery", "kombu", "sqlalchemy", "psycopg", "redis", "boto3",
               "pydantic", "pydantic_settings", "PIL", "requests", "api", "jobs", "worker", "janus_model"]

# A None entry in sys.modules makes `import X` raise ImportError, as if X were not installed.
IMPORT_WITHOUT = f"""
import sys
for name in {SERVER_ONLY!r}:
    sys.modules[name] = None
import janusq.client
from janusq.client import cli
from janusq.client import Client, verify_webhook
print(Client().url)
"""


def test_the_client_imports_without_the_servers_packages():
    done = subprocess.run([sys.executable, "-c", IMPORT_WITHOUT], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "JANUS_URL": "http://janus.example:9000/"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://janus.example:9000"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_client_commands_need_no_server_settings_and_fail_in_one_line():
    # An invalid server setting would stop every server command (exit 2); the client commands
    # are handed over before settings load, and a refused connection is one line and exit 1.
    env = {**os.environ, "JANUS_PORT": "not-a-port", "JANUS_DATABASE_URL": "nosuch://"}
    done = subprocess.run([sys.executable, "-m", "janusq", "jobs", "list", "--url", f"http://127.0.0.1:{_closed_port()}"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("janusq: connection_error: cannot reach")


def test_the_janusq_command_runs_client_commands_without_the_servers_packages():
    # The same command dispatches the server's commands; the client ones must not load its modules
    # (pydantic-settings alone doubles their start-up time).
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in SERVER_ONLY)
    command = blocked + f"from janusq.cli import main\nsys.exit(main(['jobs', 'list', '--url', " \
                        f"'http://127.0.0.1:{_closed_port()}']))\n"
    done = subprocess.run([sys.executable, "-c", "import sys\n" + command], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("janusq: connection_error: cannot reach") and done.stderr.count("\n") == 1
