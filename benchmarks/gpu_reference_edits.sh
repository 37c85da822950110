#!/usr/bin/env bash
# Every GPU configuration of the guidance benchmark in one run: SD1.5 at latent 64 (512 px)
# and SDXL at latent 128 (1024 px), fp16, every mode (spatial, drag, drag-real, variations),
# both update rules, checkpointing off and on. Prints one table per model × mode.
#
#   COMFYUI_PATH=/path/to/ComfyUI bash benchmarks/gpu_reference_edits.sh [python]
#
# About 2-4 minutes on one H200 (random weights, nothing downloaded); needs a ComfyUI host
# (the reference modes run the pack's Readout Reference Sampler path) and a CUDA torch.
set -euo pipefail
PYTHON="${1:-python}"
cd "$(dirname "$0")/.."
: "${COMFYUI_PATH:?set COMFYUI_PATH to a ComfyUI folder}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
date -u +"%Y-%m-%d %H:%M UTC"
for model in "sd15 64" "sdxl 128"; do
  set -- $model
  for mode in spatial drag drag-real variations; do
    "$PYTHON" benchmarks/bench_guidance.py --mode "$mode" --layout "$1" --latent "$2" --device cuda --dtype fp16 \
      --rules gradient,official --checkpointing off,on --warmup 1 --repeats 3
  done
done
