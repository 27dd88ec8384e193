"""Test helpers shared by the janus_model tests."""


class ProgressRecorder:
    """A progress callback that records its calls and asks to stop after `stop_at` steps."""

    def __init__(self, stop_at: int | None = None):
        self.calls: list[tuple[int, int]] = []
        self.stop_at = stop_at

    def __call__(self, done: int, total: int) -> bool | None:
        self.calls.append((done, total))
        if self.stop_at is not None and done >= self.stop_at:
            return False
        return None
