"""The progress/stop contract shared by image and text generation.

A callback `progress(done, total)` is called after every decode step. It rate-limits itself (the
worker only writes to the database every so often), so calling it every step is cheap. Returning
False (not merely a falsy None) means "stop": that job ends with GenerationStopped while the
other jobs of its batch go on.
"""

from collections.abc import Callable

ProgressCallback = Callable[[int, int], bool | None]

# An answer's text so far, offered every few tokens as a function that decodes it: the caller
# calls it only when it publishes the text (worker/progress.py: at its next progress write), so
# the device-to-host copy and the tokenizer run at the caller's pace, not every few tokens.
TextCallback = Callable[[Callable[[], str]], None]
# How often (in tokens) an answer so far is offered (text_batch.AnswerTap, and the simulated model).
OFFER_TEXT_EVERY = 4
