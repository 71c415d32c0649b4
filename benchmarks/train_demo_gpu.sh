#!/usr/bin/env bash
# `emu3 train-demo` and `emu3 eval` on one CUDA GPU: the shipped recipe from nothing, then the
# evaluation of its three checkpoints (and the understanding model) on the table's 500 prompts.
# A first check of the DPO path (benchmarks/gpu_smoke_dpo.py) stops it early if that breaks there.
#
#   OUT=runs/gpu bash benchmarks/train_demo_gpu.sh
#
# Writes to $OUT: gpu.txt, train.log, training_log.json (seconds per stage), eval.log and one
# eval_<model>.json per checkpoint (the same prompts and seeds, so their items are paired).
# TRAIN_LIMIT / EVAL_LIMIT (seconds) bound the two long steps. TRAIN_ARGS adds train-demo overrides,
# e.g. TRAIN_ARGS="vq_clip_frames=16 vq_tile_videos=false" for the video tokenizer (docs/history.md, "Video").
# Runs with `python3` from the checkout
# (PYTHONPATH), so the machine needs torch, numpy, safetensors, tokenizers, tiktoken, regex, pillow,
# pyyaml, tqdm and scikit-learn, not an install of this package.
set -uo pipefail
OUT=${OUT:-runs/gpu}
WORK=${WORK:-/tmp/emu3-gpu}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
emu3() { python3 -m emu3 "$@"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } | tee "$OUT/gpu.txt"

# 1. a quick check of the DPO path there (sampling from the shipped model, two DPO steps): the long
# run reaches DPO only after minutes, the earlier stages fail within seconds if they do
start=$(date +%s)
python3 benchmarks/gpu_smoke_dpo.py cuda "$WORK/smoke" >"$OUT/train.log" 2>&1 || { tail -30 "$OUT/train.log"; exit 1; }
echo "DPO check passed in $(($(date +%s) - start)) s"

# 2. the shipped recipe (README: `emu3 train-demo chat_steps=500 chat_digit_weight=5`; the run in
# benchmarks/results/gpu_h200 used the chat stage shipped before, 400 steps with the digits x3)
start=$(date +%s)
# shellcheck disable=SC2086  # TRAIN_ARGS is a list of key=value overrides, split on purpose
timeout "${TRAIN_LIMIT:-400}" python3 -m emu3 train-demo out="$WORK/demo" chat_steps=500 chat_digit_weight=5 device=cuda \
  ${TRAIN_ARGS:-} >"$OUT/train.log" 2>&1
echo "train-demo rc $? after $(($(date +%s) - start)) s"
grep -E "^== |PSNR|pairs|written|min$" "$OUT/train.log" | tail -30
cp "$WORK/demo/model/training_log.json" "$OUT/" 2>/dev/null

# 3. the evaluation, one model at a time (the shipped DPO model and its chat/ first)
start=$(date +%s)
for spec in dpo=model sft=sft/model pretrain=pretrain/model; do
  name=${spec%%=*}
  left=$((${EVAL_LIMIT:-140} - ($(date +%s) - start)))
  [ "$left" -gt 10 ] || break
  timeout "$left" python3 -m emu3 eval --device cuda --model "$name=$WORK/demo/${spec#*=}" --n 500 -o "$WORK/eval-$name" \
    >>"$OUT/eval.log" 2>&1
  echo "eval $name rc $? after $(($(date +%s) - start)) s"
  cp "$WORK/eval-$name/eval.json" "$OUT/eval_$name.json" 2>/dev/null
done
grep -E "^\S+ +\S+ +\S+ [0-9.]+ \+-" "$OUT/eval.log" | tail -40
