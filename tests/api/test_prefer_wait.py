import pytest

from api.routes import requested_wait


@pytest.mark.parametrize("header,expected", [
    (None, 0), ("", 0), ("wait=5", 5), ("respond-async, wait=10", 10), ("WAIT = 7", 7),
    ("wait=999", 60), ("wait=abc", 0), ("wait=-3", 0), ("handling=strict", 0),
])
def test_prefer_wait_header(header, expected):
    assert requested_wait(header, limit=60) == expected
