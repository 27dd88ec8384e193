"""The progress/stop contract shared by image and text generation.

A callback `progress(done, total)` is called after every decode step. It rate-limits itself (the
worker only writes to the database every so often), so calling it every step is cheap. Returning
False (not merely a falsy None) means "stop": that job ends with GenerationStopped while the
other jobs of its batch go on.
"""

from collections.abc import Callable

ProgressCallback = Callable[[int, int], bool | None]
