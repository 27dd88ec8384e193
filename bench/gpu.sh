#!/usr/bin/env bash
# The GPU checks of the engine, on one H100 or H200, in about 6 minutes: the smoke test first,
# then stock transformers generate() and our engine, bf16, random weights at the real sizes.
#
# With the device tool (no network there; carry the transformers 5.23.0 wheel in .whl/):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl transformers==5.23.0
#   run: bash bench/gpu.sh            (carry: [".whl"], timeout_s: 540)
# Prints JSON lines (and writes them to $OUT/bench.jsonl when OUT is set); copy them into
# BENCHMARKS.md with the date, device and commit. Every step runs, and prints what it measured,
# even when an earlier one failed; each ends with a {"bench": "step", ...} line with its status.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/janus-gpu-bench}
mkdir -p "$out"
log="$out/bench.jsonl"

# The GPU machine's recipe: its own python3 (with torch), the carried wheels in a target folder.
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || echo '{"bench": "step", "name": "install", "status": "failed"}'
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/janus-inductor}"
# The device tool's copy of .git can be older than the tree it sends: pass COMMIT=$(git rev-parse --short HEAD).
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
echo "{\"bench\": \"run\", \"date\": \"$(date -u +%FT%TZ)\", \"commit\": \"$commit\", \"gpu\": \"$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null)\", \"torch\": \"$(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null)\", \"transformers\": \"$(python3 -c 'import transformers; print(transformers.__version__)' 2>/dev/null)\"}" | tee -a "$log"

step() {  # step NAME SECONDS COMMAND...: run it, keep its JSON lines, report how it ended
    local name=$1 limit=$2 started rc
    shift 2
    started=$(date +%s)
    timeout "$limit" "$@" 2>"$out/$name.err" | tee -a "$log"
    rc=${PIPESTATUS[0]}
    echo "{\"bench\": \"step\", \"name\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - started ))}" | tee -a "$log"
    [ "$rc" = 0 ] || tail -n 25 "$out/$name.err"
}

step smoke 100 python3 -m pytest -q -p no:cacheprovider -m gpu tests/janus_model/test_gpu.py
# Stock transformers in its own process: nothing of the engine's is resident while it runs.
[ "${SKIP_STOCK:-0}" = 1 ] || step stock-1.3b 80 python3 -m janus_model.bench --model janus-1.3b --device cuda --path stock \
    --stock-images "${STOCK_IMAGES:-16}" --answer-tokens 128
# The engine, each variant on the same model: the default (graphs, compiled kernels, SDPA), SDPA
# asked for cuDNN's kernel first (2-3x faster attention in bench/step_probe.py; not yet measured
# in the engine), and graphs without compiled kernels.
step engine-1.3b 200 python3 -m janus_model.bench --model janus-1.3b --device cuda --path engine \
    --images 1,16 --jobs 4x8 --answer-tokens 128 --vq-decode \
    ${ENGINE_VARIANTS:---variant graphs=1 --variant graphs=1,attention=cudnn --variant graphs=1,compile=0}
# Janus-Pro-7B, one 16-image job planned to keep everything under 22 GB (the 24 GB-card case).
step engine-7b 120 python3 -m janus_model.bench --model janus-pro-7b --device cuda --path engine \
    --images 16 --answer-tokens 0 --memory-cap-gb 22 ${ENGINE_7B_VARIANT:-}
# Janus-1.3B, one 16-image job on an 8 GB card: one batch needs 9.3 GB reserved (weights 3.7 +
# KV 3.8 + the rest), so under an 8 GB cap the planner splits it; this line is what that costs.
step engine-1.3b-8gb 90 python3 -m janus_model.bench --model janus-1.3b --device cuda --path engine \
    --images 16 --answer-tokens 0 --vq-decode --memory-cap-gb 8 ${ENGINE_8GB_VARIANT:-}
