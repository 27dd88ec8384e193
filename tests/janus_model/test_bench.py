"""`janusq bench`, the model benchmark, on the CPU: every measurement line parses and carries its figures."""

import json
import subprocess
import sys


def test_quick_cpu_bench_prints_stock_and_engine_figures(tiny_checkpoint):
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
    answers = [line for line in lines if line["workload"] == "understand"]
    assert all(line["new_tokens"] == 8 and line["ttft_ms"] > 0 for line in answers)
