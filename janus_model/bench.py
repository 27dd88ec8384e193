"""Model benchmark: transformers' stock generate() and our engine, measured against the floor.

    python -m janus_model.bench --model janus-1.3b --device cuda       # random weights, real sizes
    python -m janus_model.bench --model tiny --device cpu --quick      # the CPU smoke run

Prints one JSON line per measurement: model, path (stock|engine), engine options, workload, jobs,
the batches the planner made, images or tokens, seconds, ms per step, images/s or tokens/s, time
to first token, peak allocated and reserved device memory in GB (10^9 bytes), the copy bandwidth
measured in this run, the workload's bandwidth floor and the fraction of it reached
(janus_model.bench_floor). Needs only torch, transformers and Pillow, so it runs on a bare GPU
machine.

Honest by construction: jobs go through the service's own planning (janus_model.batching), each
measured set starts from a released engine and an emptied allocator, is run once to capture and
compile, then measured; stock runs before the engine (or alone, with --path stock).
"""

import argparse
import gc
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from transformers.generation.streamers import BaseStreamer

from janus_model.batching import answers_for_jobs, image_codes_for_jobs, plan_batches
from janus_model.bench_floor import BatchShape, copy_bandwidth, floor_seconds, weight_bytes_per_pass
from janus_model.devices import resolve_device, resolve_dtype
from janus_model.engine import DecodeEngine, EngineOptions
from janus_model.image_decode import codes_to_images, codes_to_images_in_chunks
from janus_model.memory import MemoryPolicy
from janus_model.requests import AnswerRequest, ImageRequest
from janus_model.stock import stock_answer_tokens, stock_image_tokens
from janus_model.text_batch import TextRow

GENERATION_PROMPT_TOKENS = 32
UNDERSTANDING_TEXT_TOKENS = 40  # + 576 image tokens = the 616-token prompt of the targets
GB = 10**9


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


def fresh_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


@contextmanager
def measured(device: torch.device, record: dict):
    """Time the block (device work included) and record the peak device memory since the last reset."""
    synchronize(device)
    started = time.perf_counter()
    yield started
    synchronize(device)
    record["seconds"] = round(time.perf_counter() - started, 4)
    if device.type == "cuda":
        record["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / GB, 3)
        record["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved(device) / GB, 3)


class FirstStepClock:
    """A progress callback that notes when the first token is out (device-synchronised)."""

    def __init__(self, device: torch.device):
        self.device, self.started, self.first = device, None, None

    def __call__(self, done: int, total: int) -> None:
        if done == 1 and self.first is None:
            synchronize(self.device)
            self.first = time.perf_counter() - self.started


# ---- image generation ---------------------------------------------------------------------------


def image_requests(subject: Subject, jobs: list[int], clock: FirstStepClock) -> tuple[list, dict]:
    """Different prompts and seeds per job; the first job's progress times the first token."""
    requests = [ImageRequest(f"job {job}", count, 5.0, 1.0, seed=job, progress=clock if job == 0 else None)
                for job, count in enumerate(jobs)]
    return requests, {job: subject.generation_prompt(job) for job in range(len(jobs))}


def engine_images(subject: Subject, engine: DecodeEngine, jobs: list[int]) -> dict:
    device = engine.device
    clock = FirstStepClock(device)
    requests, prompts = image_requests(subject, jobs, clock)
    record = {}
    with measured(device, record) as started:
        clock.started = started
        codes = image_codes_for_jobs(engine, requests, prompts)
        synchronize(device)
        decode_started = time.perf_counter()
        for index in range(len(jobs)):
            codes_to_images_in_chunks(subject.model, codes[index], engine.vq_decode_chunk())
    steps = engine.image_token_count
    batches = planned_image_batches(engine, jobs, prompts)
    record["ms_per_step"] = round((decode_started - started - clock.first) / (len(batches) * steps - 1) * 1000, 3)
    record["ttft_ms"] = round(clock.first * 1000, 2)
    record["batches"] = [sum(part.count for part in batch) for batch in batches]
    return _image_record(record, jobs, image_shapes(engine, batches, prompts))


def planned_image_batches(engine: DecodeEngine, jobs: list[int], prompts: dict) -> list:
    """The batches image_codes_for_jobs made: the same call on the same inputs."""
    return plan_batches(jobs, engine.image_capacity(max(len(ids) for ids in prompts.values())))


def image_shapes(engine, batches, prompts) -> list[BatchShape]:
    longest = max(len(ids) for ids in prompts.values())
    return [BatchShape(2 * sum(part.count for part in batch), longest, engine.image_token_count) for batch in batches]


def stock_images(subject: Subject, count: int) -> dict:
    device = subject.model.device
    record = {}
    with measured(device, record):
        codes = stock_image_tokens(subject.model, subject.generation_prompt(0).to(device), count, 5.0, greedy=False)
        codes_to_images(subject.model, codes)
    record["ms_per_step"] = round(record["seconds"] / 576 * 1000, 3)  # VQ decode included: an upper bound
    shape = BatchShape(2 * count, len(subject.generation_prompt(0)), 576)
    return _image_record(record, [count], [shape])


def _image_record(record: dict, jobs: list[int], shapes: list[BatchShape]) -> dict:
    images = sum(jobs)
    return {"workload": "generate", "jobs": len(jobs), "images": images, **record,
            "images_per_s": round(images / record["seconds"], 3), "shapes": shapes}


# ---- understanding ------------------------------------------------------------------------------


def engine_answer(subject: Subject, engine: DecodeEngine, new_tokens: int) -> dict:
    device = engine.device
    inputs = subject.understanding_inputs()
    clock = FirstStepClock(device)
    row = TextRow(inputs["input_ids"][0], inputs["pixel_values"], new_tokens, 0.0, 1.0, 0)
    request = AnswerRequest(None, "", new_tokens, progress=clock)  # the row above is what runs
    record = {}
    with measured(device, record) as started:
        clock.started = started
        tokens = answers_for_jobs(engine, [request], {0: row})[0]
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
    fresh_memory(device)
    record = {}
    with measured(device, record) as started:
        streamer = FirstTokenStreamer(device, started)
        tokens = stock_answer_tokens(subject.model, inputs, new_tokens, streamer=streamer)
    return _answer_record(record, len(tokens), streamer.first, inputs)


def _answer_record(record: dict, tokens: int, first_token_seconds: float, inputs: dict) -> dict:
    decode_seconds = max(record["seconds"] - first_token_seconds, 1e-9)
    prompt = inputs["input_ids"].shape[1]
    return {"workload": "understand", "jobs": 1, "prompt_tokens": prompt,
            "new_tokens": tokens, **record, "ttft_ms": round(first_token_seconds * 1000, 2),
            "ms_per_step": round(decode_seconds / max(tokens - 1, 1) * 1000, 3),
            "tokens_per_s": round(tokens / record["seconds"], 1),
            "decode_tokens_per_s": round((tokens - 1) / decode_seconds, 1),
            "shapes": [BatchShape(1, prompt, tokens)]}


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


class Reporter:
    """Completes and prints each record: base fields, the floor, the fraction of it reached."""

    def __init__(self, base: dict, model, engine_modes, bandwidth: float, kv_bytes_per_position: int):
        self.base, self.bandwidth, self.kv_bytes = base, bandwidth, kv_bytes_per_position
        self.weights = {workload: weight_bytes_per_pass(model, mode) for workload, mode in engine_modes.items()}

    def emit(self, path: str, record: dict, **extra) -> None:
        shapes = record.pop("shapes")
        floor = floor_seconds(shapes, self.weights[record["workload"]], self.kv_bytes, self.bandwidth)
        emit({**self.base, "path": path, **extra, **record, "copy_tb_per_s": round(self.bandwidth / 1e12, 3),
              "floor_s": round(floor, 6), "floor_fraction": round(floor / record["seconds"], 3)})


def run(args) -> None:
    for name in args.model.split(","):
        subject = (tiny_subject(args.checkpoint, args.device, args.dtype) if name == "tiny"
                   else real_size_subject(name, args.device, args.dtype))
        model = subject.model
        device = model.device
        fresh_memory(device)
        probe = DecodeEngine(model, EngineOptions(cuda_graphs=False))  # fuses the weights: one layout for all
        reporter = Reporter({"bench": "model", "model": name, "device": device_name(device),
                             "dtype": str(model.dtype)[6:]}, model,
                            {"generate": probe.image_mode, "understand": probe.text_mode},
                            copy_bandwidth(device), probe.arena.bytes_per_position())
        del probe
        with torch.inference_mode():
            if args.path in ("stock", "both"):
                run_stock(args, subject, reporter)
            if args.path in ("engine", "both"):
                for options in engine_variants(args, device):
                    run_engine(args, subject, reporter, options)
        del subject, model
        fresh_memory(device)


def run_stock(args, subject: Subject, reporter: Reporter) -> None:
    device = subject.model.device
    for count in parse_counts(args.stock_images):
        fresh_memory(device)
        guarded(reporter, "stock", device, lambda: stock_images(subject, count))
    if args.answer_tokens:
        guarded(reporter, "stock", device, lambda: stock_answer(subject, args.answer_tokens))


def run_engine(args, subject: Subject, reporter: Reporter, options: EngineOptions) -> None:
    device = subject.model.device
    fresh_memory(device)
    started = time.perf_counter()
    engine = DecodeEngine(subject.model, replace(options, memory=memory_policy(args, device)))
    described = {"cuda_graphs": engine.graphs, "compile": engine.decoder.kernels.compiled,
                 "attention": options.attention, "engine_setup_s": round(time.perf_counter() - started, 2)}
    sets = [("images", [count]) for count in parse_counts(args.images)]
    sets += [("images", parse_jobs(spec)) for spec in args.jobs]
    sets += [("answer", args.answer_tokens)] if args.answer_tokens else []
    for kind, workload in sets:
        def measure(kind=kind, workload=workload) -> dict:
            run_once = ((lambda: engine_images(subject, engine, workload)) if kind == "images"
                        else (lambda: engine_answer(subject, engine, workload)))
            engine.release()
            fresh_memory(device)
            warm = {}
            with measured(device, warm):
                run_once()  # captures this set's graphs (and compiles, the first time)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            return {**run_once(), "warmup_s": warm["seconds"]}

        guarded(reporter, "engine", device, measure, **described)
    engine.release()
    if args.vq_decode:
        vq_decode_memory(subject, engine, reporter.base)


def vq_decode_memory(subject: Subject, engine: DecodeEngine, base: dict) -> None:
    """What decoding n images at once costs beyond what is already allocated (a batch's peak has it on top)."""
    device = engine.device
    for count in (1, 2):
        codes = torch.randint(0, 16384, (count, engine.image_token_count), device=device)
        fresh_memory(device)
        before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        record = {}
        with measured(device, record):
            codes_to_images(subject.model, codes)
        if device.type == "cuda":
            record["extra_allocated_gb"] = round(record.pop("peak_allocated_gb") - before / GB, 3)
        emit({**base, "path": "engine", "workload": "vq_decode", "images": count, **record})


def guarded(reporter: Reporter, path: str, device: torch.device, measure, **extra) -> None:
    """One measurement; a failure prints an error line and the run goes on to the next."""
    try:
        reporter.emit(path, measure(), **extra)
    except Exception as exc:  # noqa: BLE001 - report it, keep measuring the rest
        emit({**reporter.base, "path": path, **extra, "error": f"{type(exc).__name__}: {exc}"[:500]})
        fresh_memory(device)


def engine_variants(args, device: torch.device) -> list[EngineOptions]:
    """--variant graphs=1,compile=0,attention=sdpa (repeatable); default: the flags' one variant."""
    base = EngineOptions(cuda_graphs=args.cuda_graphs, compile=args.compile, attention=args.attention)
    if not args.variant:
        return [base]
    variants = []
    for spec in args.variant:
        fields = dict(part.split("=") for part in spec.split(",") if part)
        variants.append(EngineOptions(cuda_graphs=fields.get("graphs", "1") == "1",
                                      compile={"1": True, "0": False}.get(fields.get("compile", "auto")),
                                      attention=fields.get("attention", "sdpa")))
    return variants


def memory_policy(args, device: torch.device) -> MemoryPolicy:
    if not args.memory_cap_gb or device.type != "cuda":
        return MemoryPolicy()
    # Plan batches so that everything, weights included, stays under the cap (the 24 GB-card case).
    free_for_batches = args.memory_cap_gb * GB - torch.cuda.memory_reserved(device)
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
    p.add_argument("--path", choices=("engine", "stock", "both"), default="both",
                   help="both: stock first, then the engine, in this process")
    p.add_argument("--images", default="1,16", help="one-job image counts to time")
    p.add_argument("--jobs", action="append", default=[], help="several jobs in one batch, e.g. 4x8")
    p.add_argument("--stock-images", default="1,16", help="image counts timed on the stock path")
    p.add_argument("--answer-tokens", type=int, default=128, help="new tokens of the understanding run (0: skip)")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the decoder's kernels (default: on CUDA)")
    p.add_argument("--attention", choices=("sdpa", "cudnn", "eager"), default="sdpa")
    p.add_argument("--variant", action="append", default=[],
                   help="engine options to measure, e.g. graphs=1,compile=0,attention=sdpa (repeatable)")
    p.add_argument("--memory-cap-gb", type=float, default=0,
                   help="plan batches to keep everything, weights included, under this many GB (10^9 bytes)")
    p.add_argument("--vq-decode", action="store_true", help="also measure the VQ decoder's memory per image")
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
