"""An exception as one line, for logs, probe answers and command-line errors."""
from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's text, stripped (at most `limit` characters); its type's
    name when it has no text, so there is always something to show."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    return text[:limit] if limit else text
