from __future__ import annotations

from jobs.oneline import first_line


def test_the_first_nonblank_line_stripped():
    assert first_line(ValueError("\n  bad value  \nTraceback ...")) == "bad value"


def test_an_exception_without_text_is_named_by_its_type():
    assert first_line(TimeoutError()) == "TimeoutError"
    assert first_line(OSError("   \n ")) == "OSError"


def test_a_limit_cuts_the_line():
    assert first_line(RuntimeError("x" * 300), limit=200) == "x" * 200
