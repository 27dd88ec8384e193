"""The request numbers every model, real or simulated, refuses before it runs anything."""
import pytest
from PIL import Image

from janus_model.requests import AnswerRequest, ImageRequest, check_answer_request, check_image_request


@pytest.mark.parametrize("request_, message", [
    (ImageRequest("a", num_images=0), "num_images must be at least 1"),
    (ImageRequest("a", temperature=-0.1), "temperature must be >= 0"),
])
def test_bad_image_requests_are_refused(request_, message):
    with pytest.raises(ValueError, match=message):
        check_image_request(request_)


def test_bad_answer_requests_are_refused_and_good_ones_pass():
    image = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1"):
        check_answer_request(AnswerRequest(image, "q", max_new_tokens=0))
    check_answer_request(AnswerRequest(image, "q", max_new_tokens=1, temperature=0))
    check_image_request(ImageRequest("a", num_images=1, temperature=0))
