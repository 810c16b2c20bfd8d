#!/usr/bin/env bash
# One-GPU check (<= 5 minutes): the GPU's measured bf16 and fp32 matmul peak, then the tiny
# GPT at d = 1024, 8 layers (8,192 tokens a step): full fine-tuning vs LoRA vs QLoRA (NF4
# base, skipped with a message if bitsandbytes cannot run on CUDA), step time, achieved
# TFLOP/s against the measured peak, peak memory and the LoRA/full ratios.
#
#   benchmarks/gpu_check.sh                      # on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --device cpu --small # the same code path on a CPU (seconds)
#
# Extra arguments go to benchmarks/gpu_check.py (--steps N, --rank R).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -x .venv/bin/python ]]; then
  py=.venv/bin/python
else
  py="$(command -v python3 || command -v python)"
fi
if [[ " $* " != *" --device cpu "* ]] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
# The budget is 5 minutes; stop at 290 s rather than overrun (exit code 124).
exec timeout 290 "$py" benchmarks/gpu_check.py "$@"
