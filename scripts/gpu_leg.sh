#!/usr/bin/env bash
# One leg of the long run on a lent GPU (issue 13), as a single device command of under 10 minutes:
#   here:    scripts/gpu_leg.sh prepare    # copies ../shared/data/*.npz into .gpu_data/ (git ignores it)
#   device:  run(command="bash scripts/gpu_leg.sh train", carry=[".gpu_data"], timeout_s=600)
#   here:    score files_at/leg/best and last on val (posemoe-eval --split val --stride 48) before
#            either replaces posemoe_ros/weights/posemoe_s.safetensors (docs/training.md).
# The device's own python3 has every package the training core needs (torch, numpy, safetensors,
# scipy, yaml, tqdm, matplotlib); nothing is installed there. Eight files come back: the leg's six
# (best/last weights, log.csv, curves.png, state.*), train.log and the CUDA latency rows' JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  prepare)
    mkdir -p .gpu_data
    cp ../shared/data/*.npz .gpu_data/
    du -sh .gpu_data ;;
  train)
    : "${OUT:?run this on the device machine, whose OUT folder comes back}"
    nvidia-smi -L || true
    PYTHONUNBUFFERED=1 python3 -m posemoe_ros.training.train --config "${CONFIG:-config/train/posemoe_s_gpu.yaml}" \
        --data-dir .gpu_data --out "$OUT/leg" --init posemoe_ros/weights/posemoe_s.safetensors \
        --minutes "${MINUTES:-7}" --no-progress 2>&1 | tee "$OUT/train.log"
    # the node's CUDA step (fp16 and fp32) for 1-30 people with the shipped weights (issue 12)
    PYTHONUNBUFFERED=1 timeout 100 python3 bench/streaming_latency.py --device cuda \
        --weights posemoe_ros/weights/posemoe_s.safetensors --people 1,5,10,30 --out "$OUT" \
        2>&1 | tee -a "$OUT/train.log" || true ;;
  *)
    echo "usage: $0 prepare|train" >&2
    exit 2 ;;
esac
