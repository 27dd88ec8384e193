"""Model benchmark: transformers' stock generate() and our engine, same model, same run.

    python -m janus_model.bench --model janus-1.3b --device cuda       # random weights, real sizes
    python -m janus_model.bench --model tiny --device cpu --quick      # the CPU smoke run

Prints one JSON line per measurement: model, path (stock|engine), workload, jobs, images or
tokens, seconds, ms per step, images/s or tokens/s, time to first token, peak memory, device.
Needs only torch, transformers and Pillow, so it runs on a bare GPU machine.
"""

import argparse
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers.generation.streamers import BaseStreamer

from janus_model.devices import resolve_device, resolve_dtype
from janus_model.engine import DecodeEngine, EngineOptions
from janus_model.image_batch import ImageRow, generate_codes
from janus_model.image_decode import codes_to_images, codes_to_images_in_chunks
from janus_model.memory import MemoryPolicy
from janus_model.sampling import row_seed
from janus_model.stock import stock_answer_tokens, stock_image_tokens
from janus_model.text_batch import TextRow, generate_answers

GENERATION_PROMPT_TOKENS = 32
UNDERSTANDING_TEXT_TOKENS = 40  # + 576 image tokens = the 616-token prompt of the targets


@dataclass
class Subject:
    """A model to measure and the inputs it takes."""

    name: str
    model: object  # JanusForConditionalGeneration
    generation_prompt: object  # (salt) -> [L] ids
    understanding_inputs: object  # () -> dict(input_ids, attention_mask, pixel_values)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def measured(device: torch.device, record: dict):
    """Time the block (device work included) and record peak device memory."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    started = time.perf_counter()
    yield started
    synchronize(device)
    record["seconds"] = round(time.perf_counter() - started, 4)
    if device.type == "cuda":
        record["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


class FirstStepClock:
    """on_step callback that notes when the first token is out (device-synchronised)."""

    def __init__(self, device: torch.device, started: float):
        self.device, self.started, self.first = device, started, None

    def __call__(self, done: int) -> bool:
        if done == 1:
            synchronize(self.device)
            self.first = time.perf_counter() - self.started
        return True


# ---- image generation ---------------------------------------------------------------------------


def engine_images(subject: Subject, engine: DecodeEngine, jobs: list[int]) -> dict:
    """jobs: images per job; different prompts and seeds, all in one batch."""
    device = engine.device
    rows = [ImageRow(subject.generation_prompt(job), 5.0, 1.0, row_seed(job, index))
            for job, count in enumerate(jobs) for index in range(count)]
    record = {}
    with measured(device, record) as started:
        clock = FirstStepClock(device, started)
        codes = generate_codes(engine, rows, clock)
        synchronize(device)
        decode_started = time.perf_counter()
        codes_to_images_in_chunks(subject.model, codes, engine.vq_decode_chunk())
    steps = engine.image_token_count
    record["ms_per_step"] = round((decode_started - started - clock.first) / (steps - 1) * 1000, 3)
    record["ttft_ms"] = round(clock.first * 1000, 2)
    return _image_record(record, jobs)


def stock_images(subject: Subject, count: int) -> dict:
    device = subject.model.device
    record = {}
    with measured(device, record):
        codes = stock_image_tokens(subject.model, subject.generation_prompt(0).to(device), count, 5.0, greedy=False)
        codes_to_images(subject.model, codes)
    record["ms_per_step"] = round(record["seconds"] / 576 * 1000, 3)  # VQ decode included: an upper bound
    return _image_record(record, [count])


def _image_record(record: dict, jobs: list[int]) -> dict:
    images = sum(jobs)
    return {"workload": "generate", "jobs": len(jobs), "images": images, **record,
            "images_per_s": round(images / record["seconds"], 3)}


# ---- understanding ------------------------------------------------------------------------------


def engine_answer(subject: Subject, engine: DecodeEngine, new_tokens: int) -> dict:
    device = engine.device
    inputs = subject.understanding_inputs()
    row = TextRow(inputs["input_ids"][0], inputs["pixel_values"], new_tokens, 0.0, 1.0, 0)
    record = {}
    with measured(device, record) as started:
        clock = FirstStepClock(device, started)
        tokens = generate_answers(engine, [row], clock)[0]
    return _answer_record(record, len(tokens), clock.first, inputs)


class FirstTokenStreamer(BaseStreamer):
    """generate()'s streamer hook: put() gets the prompt, then each new token; time the first."""

    def __init__(self, device: torch.device, started: float):
        self.device, self.started, self.puts, self.first = device, started, 0, None

    def put(self, value) -> None:
        self.puts += 1
        if self.puts == 2:
            synchronize(self.device)
            self.first = time.perf_counter() - self.started

    def end(self) -> None:
        pass


def stock_answer(subject: Subject, new_tokens: int) -> dict:
    device = subject.model.device
    inputs = subject.understanding_inputs()
    stock_answer_tokens(subject.model, inputs, 2)  # warm-up
    record = {}
    with measured(device, record) as started:
        streamer = FirstTokenStreamer(device, started)
        tokens = stock_answer_tokens(subject.model, inputs, new_tokens, streamer=streamer)
    return _answer_record(record, len(tokens), streamer.first, inputs)


def _answer_record(record: dict, tokens: int, first_token_seconds: float, inputs: dict) -> dict:
    decode_seconds = max(record["seconds"] - first_token_seconds, 1e-9)
    return {"workload": "understand", "jobs": 1, "prompt_tokens": inputs["input_ids"].shape[1],
            "new_tokens": tokens, **record, "ttft_ms": round(first_token_seconds * 1000, 2),
            "ms_per_step": round(decode_seconds / max(tokens - 1, 1) * 1000, 3),
            "tokens_per_s": round(tokens / record["seconds"], 1),
            "decode_tokens_per_s": round((tokens - 1) / decode_seconds, 1)}


# ---- subjects -----------------------------------------------------------------------------------


def tiny_subject(checkpoint: str, device: str, dtype: str) -> Subject:
    from PIL import Image

    from janus_model.loader import load_model

    janus = load_model(checkpoint, device=device, dtype=dtype)
    photo = Image.new("RGB", (320, 200), (30, 120, 200))
    return Subject(
        "tiny", janus.model,
        generation_prompt=lambda salt: janus.generation_input_ids(f"prompt {salt}: a lighthouse at dawn")[0],
        understanding_inputs=lambda: janus.understanding_inputs(photo, "What is in this picture?"),
    )


def real_size_subject(name: str, device: str, dtype: str) -> Subject:
    from janus_model.sizes import random_model, synthetic_generation_prompt, synthetic_understanding_prompt

    torch_device = resolve_device(device)
    model = random_model(name, torch_device, resolve_dtype(dtype, torch_device))

    def understanding_inputs() -> dict:
        ids = synthetic_understanding_prompt(UNDERSTANDING_TEXT_TOKENS).unsqueeze(0).to(torch_device)
        pixels = torch.randn((1, 3, 384, 384), generator=torch.Generator().manual_seed(0)).to(torch_device, model.dtype)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}

    return Subject(name, model,
                   generation_prompt=lambda salt: synthetic_generation_prompt(GENERATION_PROMPT_TOKENS + salt % 5, salt)
                   .to(torch_device),
                   understanding_inputs=understanding_inputs)


# ---- the run ------------------------------------------------------------------------------------


def run(args) -> None:
    for name in args.model.split(","):
        subject = (tiny_subject(args.checkpoint, args.device, args.dtype) if name == "tiny"
                   else real_size_subject(name, args.device, args.dtype))
        model = subject.model
        device = model.device
        base = {"bench": "model", "model": name, "device": device_name(device), "dtype": str(model.dtype)[6:],
                "cuda_graphs": args.cuda_graphs and device.type == "cuda", "compile": args.compile}
        engine = DecodeEngine(model, EngineOptions(cuda_graphs=args.cuda_graphs, compile=args.compile,
                                                   memory=memory_policy(args, device)))
        job_sets = [[count] for count in parse_counts(args.images)] + [parse_jobs(spec) for spec in args.jobs]
        with torch.inference_mode():
            for jobs in job_sets:
                warm = {}
                with measured(device, warm):
                    engine_images(subject, engine, jobs)  # captures/compiles this bucket
                emit({**base, "path": "engine", **engine_images(subject, engine, jobs), "warmup_s": warm["seconds"]})
                if not args.skip_stock and len(jobs) == 1 and jobs[0] in parse_counts(args.stock_images):
                    emit({**base, "path": "stock", **stock_images(subject, jobs[0])})
            if args.answer_tokens:
                engine_answer(subject, engine, args.answer_tokens)  # warm-up
                emit({**base, "path": "engine", **engine_answer(subject, engine, args.answer_tokens)})
                if not args.skip_stock:
                    emit({**base, "path": "stock", **stock_answer(subject, args.answer_tokens)})
        del engine, subject, model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def memory_policy(args, device: torch.device) -> MemoryPolicy:
    if not args.memory_cap_gb or device.type != "cuda":
        return MemoryPolicy()
    # Plan batches so that weights + batch stay under the cap (the 24 GB-card scenario).
    free_for_batches = args.memory_cap_gb * 2**30 - torch.cuda.memory_allocated(device)
    return MemoryPolicy(explicit_mb=max(1, int(free_for_batches / 2**20)))


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def parse_counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_jobs(spec: str) -> list[int]:
    """'4x8' -> four jobs of 8 images."""
    jobs, images = spec.lower().split("x")
    return [int(images)] * int(jobs)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="janusq bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="tiny, janus-1.3b, janus-pro-7b (comma-separated)")
    p.add_argument("--checkpoint", default="var/models/janus-tiny", help="the tiny checkpoint's folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--images", default="1,16", help="one-job image counts to time")
    p.add_argument("--jobs", action="append", default=[], help="several jobs in one batch, e.g. 4x8")
    p.add_argument("--stock-images", default="1,16", help="counts also timed on the stock path")
    p.add_argument("--answer-tokens", type=int, default=128, help="new tokens of the understanding run (0: skip)")
    p.add_argument("--skip-stock", action="store_true")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--memory-cap-gb", type=float, default=0, help="plan batches to keep peak memory under this")
    p.add_argument("--quick", action="store_true", help="CPU smoke run: 1 and 2 images, 8 tokens")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        args.images, args.stock_images, args.answer_tokens, args.jobs = "1", "1", 8, ["2x1"]
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
