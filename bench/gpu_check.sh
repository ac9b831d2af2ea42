#!/usr/bin/env bash
# One prepared command for a GPU machine (< 8 minutes): SD 1.5-architecture rendering speed
# (naive loop vs batched ImageGenerator), the deprojector's share of the time per image, and VT
# training samples/s at D = 768. See bench/gpu_check.py for what is measured.
#
#   bash bench/gpu_check.sh            # CUDA machine; log + JSON under $OUT (or bench/out/)
#   bash bench/gpu_check.sh --tiny     # CPU, tiny models, seconds (GPU_CHECK_TINY=1 does the same)
#
# Needs torch, diffusers, transformers, safetensors, tokenizers. A machine without diffusers
# (or with an older transformers) takes wheels from .whl/ when that folder exists: fetch them
# here with `pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1
# importlib_metadata zipp` and carry .whl.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=python3
fi
if ! "$PY" -c "import diffusers" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-check-site .whl/*.whl
    export PYTHONPATH="/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
OUT_DIR="${OUT:-bench/out}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
{
    echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) args: $*"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
    "$PY" -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$LOG"
timeout 470 "$PY" bench/gpu_check.py --json "$OUT_DIR/gpu_check.json" "$@" 2>&1 | tee -a "$LOG"
