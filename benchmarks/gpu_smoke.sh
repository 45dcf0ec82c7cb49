#!/usr/bin/env bash
# The first GPU run: the smallest paper ELT-DiT on synthetic latents, DDP and FSDP, compile off and on, on every
# visible GPU. Prints step time, MFU and peak memory per variant (see benchmarks/gpu_smoke.py).
#   bash benchmarks/gpu_smoke.sh [--size ELT-DiT/2-1x32] [--batch 32] [--steps 200] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
gpus=$(python -c "import torch; print(max(1, torch.cuda.device_count()))")
exec torchrun --standalone --nproc_per_node="$gpus" benchmarks/gpu_smoke.py "$@"
