"""Fault 4: PostgreSQL becomes unreachable; the API answers 503 JSON and recovers by itself."""
from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import requests

from tests.faults.conftest import figure
from tests.faults.network import TcpProxy


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{proxy.port}"))


def test_database_outage_is_503_json_and_service_resumes_when_it_returns(make_stack, database_url):
    host = urlsplit(database_url)
    proxy = TcpProxy(host.hostname, host.port or 5432).up()
    try:
        stack = make_stack(workers=1, database_url=through(proxy, database_url))
        before = stack.submit(type="generate", prompt="before", num_images=1).json()["id"]
        assert stack.wait(before)["status"] == "succeeded"

        proxy.down()
        refused = stack.submit(type="generate", prompt="during", num_images=1)
        assert refused.status_code == 503 and refused.headers["Content-Type"].startswith("application/json")
        assert refused.json()["error"]["field"] == "database"
        ready = requests.get(stack.base_url + "/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("down")

        proxy.up()
        back = time.monotonic()
        while (response := stack.submit(type="generate", prompt="after", num_images=1)).status_code != 202:
            assert response.status_code == 503 and time.monotonic() - back < 30, response.text
            time.sleep(0.2)
        recovered = time.monotonic() - back
        assert stack.wait(response.json()["id"])["status"] == "succeeded"
        figure(f"PostgreSQL outage: 503 JSON naming the database while down; accepting again "
               f"{recovered:.2f} s after it returned, no restart")
    finally:
        proxy.down()
