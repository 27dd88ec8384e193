#!/usr/bin/env bash
# The GPU benchmark set of issue 3, on one H100 or H200, in under 6 minutes:
#   stock transformers generate() and our engine, bf16, random weights at the real sizes.
# With the device tool (no network there; carry the transformers 5.23.0 wheel in .whl/):
#   mkdir -p .whl && pip download --no-deps -d .whl transformers==5.23.0 \
#       --python-version 3.12 --only-binary=:all:
#   run: bash bench/gpu.sh            (carry: [".whl"], timeout_s: 480)
# Prints JSON lines; copy them into BENCHMARKS.md with the date, device and commit.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c 'import sys, transformers; sys.exit(transformers.__version__ != "5.23.0")' 2>/dev/null; then
    pip install -q --no-deps --no-index .whl/transformers-5.23.0-*.whl
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "{\"bench\": \"run\", \"date\": \"$(date -u +%FT%TZ)\", \"commit\": \"$commit\"}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

# Janus-1.3B: one 1-image job, one 16-image job, four 8-image jobs in one batch, understanding.
timeout 220 python -m janus_model.bench --model janus-1.3b --device cuda \
    --images 1,16 --stock-images 1,16 --jobs 4x8 --answer-tokens 128
# Janus-Pro-7B: one 16-image job, planned to stay under 22 GB (the 24 GB-card case).
timeout 160 python -m janus_model.bench --model janus-pro-7b --device cuda \
    --images 16 --stock-images 16 --answer-tokens 0 --memory-cap-gb 22
# Optional, when time is left: the same 1.3B set with torch.compile inside the graphs
# (about a minute of warm-up per batch shape).
if [ "${JANUS_BENCH_COMPILE:-0}" = 1 ]; then
    timeout 300 python -m janus_model.bench --model janus-1.3b --device cuda --compile \
        --images 16 --jobs 4x8 --skip-stock --answer-tokens 128
fi
