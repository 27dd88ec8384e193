"""The simulated model: its timing, its outputs, progress and cancel, and that it never needs torch."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from janus_model.errors import GenerationStopped
from janus_model.requests import AnswerRequest, ImageRequest
from janus_model.simulated import SimulatedModel, parse_spec
from janus_model.simulated_profiles import IMAGE_TOKENS, PROFILES
from jobs.settings import SettingsError, load_settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeClock:
    """Time passes only when the model sleeps: the test sees exactly what it asked to sleep."""

    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def simulated(spec: str = "simulated:h100-janus-1.3b") -> tuple[SimulatedModel, FakeClock]:
    clock = FakeClock()
    return SimulatedModel(parse_spec(spec), sleep=clock.sleep, clock=clock), clock


def test_images_are_384_pngs_that_follow_the_seed():
    model, _ = simulated()
    [first, again, other] = model.generate_images_batch(
        [ImageRequest("a cat", num_images=2, seed=7), ImageRequest("a dog", num_images=1, seed=7),
         ImageRequest("a cat", num_images=1, seed=8)])
    assert len(first) == 2 and first[0].tobytes() != first[1].tobytes()  # each image of a job differs
    assert again[0].tobytes() == first[0].tobytes() and other[0].tobytes() != first[0].tobytes()
    buffer = io.BytesIO()
    first[0].save(buffer, format="PNG")
    reread = Image.open(io.BytesIO(buffer.getvalue()))
    reread.load()
    assert (reread.format, reread.size, reread.mode) == ("PNG", (384, 384), "RGB")


def test_a_batch_sleeps_what_its_profile_says_times_the_scale():
    profile = PROFILES["h100-janus-1.3b"]
    model, clock = simulated("simulated:h100-janus-1.3b?scale=10")
    model.generate_images_batch([ImageRequest("a", num_images=3), ImageRequest("b", num_images=1)])
    assert clock.now == pytest.approx(10 * profile.image_batch_seconds(4))
    model, clock = simulated()
    model.answer_batch([AnswerRequest(None, "what?", max_new_tokens=100), AnswerRequest(None, "and?", max_new_tokens=40)])
    assert clock.now == pytest.approx(profile.answer_batch_seconds(2, 100))


def test_more_rows_cost_more_per_step_but_less_per_image():
    for profile in PROFILES.values():
        one, sixteen = profile.image_batch_seconds(1), profile.image_batch_seconds(16)
        assert one < sixteen < 16 * one
        assert profile.understanding.seconds(1) < profile.understanding.seconds(8)
    assert PROFILES["h100-janus-1.3b"].image_batch_seconds(1) > PROFILES["h200-janus-1.3b"].image_batch_seconds(1)


def test_progress_is_reported_after_every_step():
    model, _ = simulated()
    images, answers = [], []
    model.generate_images_batch([ImageRequest("a", num_images=1, progress=lambda done, total: images.append((done, total)))])
    model.answer_batch([AnswerRequest(None, "q", max_new_tokens=5, progress=lambda d, t: answers.append((d, t))),
                        AnswerRequest(None, "q", max_new_tokens=9)])
    assert images == [(step, IMAGE_TOKENS) for step in range(1, IMAGE_TOKENS + 1)]
    assert answers == [(step, 5) for step in range(1, 6)]


def test_a_cancel_ends_that_request_alone_and_a_batch_of_cancels_ends_early():
    model, clock = simulated()
    stop_at_ten = lambda done, total: done < 10  # noqa: E731
    [stopped, finished] = model.generate_images_batch(
        [ImageRequest("a", num_images=1, progress=stop_at_ten), ImageRequest("b", num_images=1)])
    assert isinstance(stopped, GenerationStopped) and len(finished) == 1
    full = clock.now
    clock.now = 0.0
    [alone] = model.answer_batch([AnswerRequest(None, "q", max_new_tokens=200, progress=stop_at_ten)])
    assert isinstance(alone, GenerationStopped)
    assert clock.now < PROFILES["h100-janus-1.3b"].answer_batch_seconds(1, 20) < full


def test_refused_inputs_fail_alone_and_answers_are_text():
    model, _ = simulated()
    [bad, good] = model.answer_batch([AnswerRequest(None, "q", max_new_tokens=0), AnswerRequest(None, "what?", seed=3)])
    assert isinstance(bad, ValueError) and "max_new_tokens" in str(bad)
    assert isinstance(good, str) and "what?" in good
    assert model.budget.reserved_tokens_in("hi <image_placeholder>") == ["<image_placeholder>"]
    assert not model.budget.generation_fits("x" * 70_000)


@pytest.mark.parametrize("spec, message", [
    ("simulated:h100-janus-9b", "unknown simulated profile 'h100-janus-9b'"),
    ("simulated:h100-janus-1.3b?scale=0", "scale must be in"),
    ("simulated:h100-janus-1.3b?speed=2", "unknown simulated model option 'speed'"),
])
def test_a_bad_spec_is_a_one_line_settings_error(spec, message):
    with pytest.raises(SettingsError, match=message) as raised:
        load_settings(model=spec)
    assert "JANUS_MODEL" in str(raised.value) and "\n" not in str(raised.value)


def test_a_worker_with_an_unknown_profile_exits_at_start_with_one_line(tmp_path):
    env = {**os.environ, "JANUS_MODEL": "simulated:nope", "JANUS_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "janusq", "worker"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "janusq: invalid JANUS_MODEL: unknown simulated profile 'nope' "
        "(choose from h100-janus-1.3b, h100-janus-pro-7b, h200-janus-1.3b, h200-janus-pro-7b)"]


WORKER_PATH = textwrap.dedent("""
    import json
    import sys
    from jobs import service
    from jobs.models import Job
    from jobs.migrate import upgrade
    from jobs.settings import load_settings
    from worker.celery_app import create_worker_app

    settings = load_settings()
    upgrade(settings.database)
    runtime = create_worker_app(settings).janus_runtime
    with runtime.db.session() as session:
        job = service.add_job(session, "generate", {"prompt": "a red fox", "num_images": 2, "cfg_weight": 5.0,
                                                    "temperature": 1.0, "seed": 4})
    status = runtime.executor(("generate",)).run(job.id)
    with runtime.db.session() as session:
        print(json.dumps(session.get(Job, job.id).result))
    print(status)
    print("torch" in sys.modules, "transformers" in sys.modules)
""")


def test_the_worker_path_runs_a_job_on_the_simulated_model_without_importing_torch(tmp_path):
    env = {**os.environ, "JANUS_MODEL": "simulated:h100-janus-1.3b?scale=0.05", "JANUS_DATA_DIR": str(tmp_path),
           "JANUS_DATABASE_URL": "", "JANUS_BROKER_URL": "", "JANUS_STORAGE_URL": ""}
    done = subprocess.run([sys.executable, "-c", WORKER_PATH], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    status_line, imports_line = done.stdout.strip().splitlines()[-2:]
    assert status_line == "succeeded"
    assert imports_line == "False False"  # neither torch nor transformers was imported
    assert '"prompt_format"' in done.stdout.strip().splitlines()[-3]  # the result records the served settings
    stored = sorted((tmp_path / "storage" / "jobs").glob("*/*.png"))
    assert len(stored) == 2 and all(Image.open(path).size == (384, 384) for path in stored)
