"""The offered load of `janusq bench --fleet`: a Poisson stream of mixed jobs through the HTTP API.

Arrival times are drawn up front (exponential gaps at the offered rate, seeded), and a pool of
sender threads posts each job at its time over keep-alive connections, so a slow response
delays no later arrival. Half the jobs generate images (1, 2 or 4), half answer a question about
a small uploaded image (64, 128 or 256 new tokens): the mix `expected_job_seconds` prices.
"""
from __future__ import annotations

import http.client
import io
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlparse

from janus_model.simulated_profiles import Profile

IMAGE_COUNTS = (1, 2, 4)
ANSWER_TOKENS = (64, 128, 256)
SENDERS = 16


def expected_job_seconds(profile: Profile, scale: float) -> float:
    """A job of the mix run alone on one worker (a batch of one), in wall seconds at this scale."""
    generate = sum(profile.image_batch_seconds(count) for count in IMAGE_COUNTS) / len(IMAGE_COUNTS)
    understand = sum(profile.answer_batch_seconds(1, tokens) for tokens in ANSWER_TOKENS) / len(ANSWER_TOKENS)
    return scale * (generate + understand) / 2


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds after the start
    type: str
    size: int  # images or new tokens
    seed: int


def poisson_arrivals(rate: float, duration: float, seed: int = 0) -> list[Arrival]:
    rng = random.Random(seed)
    arrivals, now = [], rng.expovariate(rate)
    while now < duration:
        if rng.random() < 0.5:
            arrivals.append(Arrival(now, "generate", rng.choice(IMAGE_COUNTS), rng.randrange(2**31)))
        else:
            arrivals.append(Arrival(now, "understand", rng.choice(ANSWER_TOKENS), rng.randrange(2**31)))
        now += rng.expovariate(rate)
    return arrivals


@dataclass
class Offered:
    accepted: dict[str, Arrival] = field(default_factory=dict)  # job id -> what was asked
    refused: list[str] = field(default_factory=list)  # status or error of each refused submit
    submit_ms: list[float] = field(default_factory=list)
    started: float = 0.0  # time.time() of the first possible arrival
    ended: float = 0.0  # time.time() when the last submit returned


def offer(api_url: str, arrivals: list[Arrival]) -> Offered:
    result = Offered(started=time.time())
    queue = iter(arrivals)
    lock = threading.Lock()
    origin = time.monotonic()
    image = _small_png()

    def send_all() -> None:
        client = _Client(api_url)
        while True:
            with lock:
                arrival = next(queue, None)
            if arrival is None:
                return
            time.sleep(max(0.0, origin + arrival.at - time.monotonic()))
            began = time.monotonic()
            outcome = client.submit(arrival, image)
            with lock:
                result.submit_ms.append((time.monotonic() - began) * 1000)
                if outcome.startswith("job:"):
                    result.accepted[outcome[4:]] = arrival
                else:
                    result.refused.append(outcome)

    threads = [threading.Thread(target=send_all, daemon=True) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.ended = time.time()
    return result


class _Client:
    def __init__(self, api_url: str):
        self.address = urlparse(api_url)
        self.connection: http.client.HTTPConnection | None = None

    def submit(self, arrival: Arrival, image: bytes) -> str:
        """'job:<id>' when accepted, else the status or error."""
        body, content_type = _body(arrival, image)
        for _ in range(2):  # a keep-alive connection the server closed is retried once
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection(self.address.hostname, self.address.port, timeout=30)
                self.connection.request("POST", "/v1/jobs", body=body, headers={"Content-Type": content_type})
                response = self.connection.getresponse()
                payload = response.read()
                if response.status in (201, 202):
                    return "job:" + json.loads(payload)["id"]
                return f"http {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                self.connection = None
                error = type(exc).__name__
        return error


def _body(arrival: Arrival, image: bytes) -> tuple[bytes, str]:
    if arrival.type == "generate":
        fields = {"type": "generate", "prompt": f"a lighthouse at dusk, study {arrival.seed}",
                  "num_images": arrival.size, "seed": arrival.seed}
        return json.dumps(fields).encode(), "application/json"
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (("type", "understand"), ("question", "What is in this picture?"),
                        ("max_new_tokens", str(arrival.size)), ("seed", str(arrival.seed))):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="in.png"\r\n'
                 f"Content-Type: image/png\r\n\r\n".encode() + image + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _small_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()
