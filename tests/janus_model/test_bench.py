"""`janusq bench`, the model benchmark, on the CPU: every measurement line parses and carries its
figures, and the floor it reports is the arithmetic of janus_model.bench_floor."""

import json
import subprocess
import sys

import pytest

from janus_model.bench_floor import BatchShape, floor_bytes, floor_seconds


def test_quick_cpu_bench_prints_stock_and_engine_figures_against_the_floor(tiny_checkpoint):
    result = subprocess.run(
        [sys.executable, "-m", "janusq", "bench", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
         "--quick"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    seen = {(line["path"], line["workload"], line["jobs"]) for line in lines}
    assert seen == {("engine", "generate", 1), ("stock", "generate", 1), ("engine", "generate", 2),
                    ("engine", "understand", 1), ("stock", "understand", 1)}
    for line in lines:
        assert line["model"] == "tiny" and line["device"] == "cpu" and line["seconds"] > 0
        assert line["ms_per_step"] > 0
        assert (line.get("images_per_s") or line.get("tokens_per_s")) > 0
        assert line["copy_tb_per_s"] > 0 and line["floor_s"] > 0
        assert line["floor_fraction"] == pytest.approx(line["floor_s"] / line["seconds"], abs=1e-3, rel=1e-2)
    answers = [line for line in lines if line["workload"] == "understand"]
    assert all(line["new_tokens"] == 8 and line["ttft_ms"] > 0 for line in answers)
    engine = [line for line in lines if line["path"] == "engine"]
    assert {tuple(line.get("batches", [])) for line in engine if line["workload"] == "generate"} == {(1,), (2,)}
    assert all(line["warmup_s"] > 0 for line in engine)


def test_the_floor_counts_weights_per_pass_and_the_live_prefix_per_step():
    # 3 passes over a 4-token prompt: weights 3 times; decode steps see 5 then 6 positions.
    batch = BatchShape(rows=2, prompt_tokens=4, passes=3)
    assert floor_bytes(batch, weights_per_pass=1000, kv_bytes_per_position=10) == 3 * 1000 + 2 * (5 + 6) * 10
    assert floor_bytes(BatchShape(1, 4, 1), 1000, 10) == 1000  # the prompt pass alone reads no cache
    two = [batch, batch]
    assert floor_seconds(two, 1000, 10, bandwidth=100.0) == 2 * floor_bytes(batch, 1000, 10) / 100.0
