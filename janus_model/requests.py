"""What a caller asks of the model, one job at a time, so that several jobs can share one batch.

A batch call returns one outcome per request, in order: the result, or the exception that ended
that request alone (GenerationStopped when its progress callback said stop, ValueError for input
the model refuses). An exception that ends the whole batch (out of memory, a device fault) is
raised instead; the caller may then retry the requests one by one to find the culprit.
"""

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from janus_model.progress import ProgressCallback, TextCallback


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    num_images: int = 4
    cfg_weight: float = 5.0
    temperature: float = 1.0  # 0 means greedy
    seed: int = 0
    progress: ProgressCallback | None = None
    # Previews per image (0: none), each handed to on_preview as it is made (janus_model/previews.py).
    previews: int = 0
    on_preview: Callable[[list[tuple[int, bytes]], int], None] | None = None


@dataclass(frozen=True)
class AnswerRequest:
    image: Image.Image
    question: str
    max_new_tokens: int = 256
    temperature: float = 0.1  # 0 means greedy
    top_p: float = 0.95
    seed: int = 0
    progress: ProgressCallback | None = None
    on_text: TextCallback | None = None  # the answer so far, every few tokens (janus_model/progress.py)


def check_image_request(request: ImageRequest) -> None:
    """The numbers any model refuses, real or simulated; ValueError ends that request alone."""
    _check_positive("num_images", request.num_images)
    _check_not_negative("temperature", request.temperature)


def check_answer_request(request: AnswerRequest) -> None:
    _check_positive("max_new_tokens", request.max_new_tokens)
    _check_not_negative("temperature", request.temperature)


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _check_not_negative(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0 = greedy), got {value}")


# One entry per request: the images / the answer text, or the exception that ended that request.
ImageOutcome = list[Image.Image] | BaseException
AnswerOutcome = str | BaseException
