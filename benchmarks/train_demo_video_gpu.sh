#!/usr/bin/env bash
# The shipped recipe on a vision tokenizer made for motion, with 20,000 clips in pretraining, on one
# CUDA GPU: what the video target needs (docs/history.md, "Video: the tokenizer holds it back"). The tokenizer
# is trained beforehand (here, on the CPU) and carried: VQ=... names its folder.
#
#   VQ=runs/vqt/tile1/model OUT=runs/vdemo/gpu bash benchmarks/train_demo_video_gpu.sh
#
# Runs `emu3 train-demo` under LIMIT seconds (default 540); a second call on the same machine resumes
# it at the stage it was in (each stage is skipped once done, pretraining resumes from its last
# checkpoint). After each call, `benchmarks/demo_transfer.py pack` writes every finished stage's decoder
# to $OUT (bf16, without the tokenizer), with train.log and the final training_log.json;
# `demo_transfer.py unpack` rebuilds the folders and the shipped layout here. TRAIN_ARGS adds or
# overrides train-demo options; DEVICE (default cuda) and WORK (default /tmp/emu3-vdemo) too.
# Runs with `python3` from the checkout (PYTHONPATH), as benchmarks/train_demo_gpu.sh does.
set -uo pipefail
VQ=${VQ:?set VQ to the vision tokenizer folder}
OUT=${OUT:?set OUT}
WORK=${WORK:-/tmp/emu3-vdemo}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

# The shipped model's recipe, configs/train_demo/shipped.yaml: 20,000 clips instead of 600 and
# pretraining as benchmarks/video_scaling.py's decoder (32 rows a step; at 6,000 steps about two thirds
# of the rows are clips, a clip ~385 tokens, a scene ~100: about the 128,000 clips that decoder saw), two
# DPO rounds, a gen stage with videos, chat/. The run that made the shipped folder (at 33ff8c6) ran
# `gen_steps=300` and one DPO round here, then round two and the gen stage on a CPU
# (benchmarks/demo_gen_cpu.py); TRAIN_ARGS="dpo_rounds=1 gen_steps=300 gen_video_weight=0 gen_lr=1e-4"
# repeats that first part.
RECIPE=configs/train_demo/shipped.yaml
ARGS="vq_from=$VQ device=$DEVICE ${TRAIN_ARGS:-}"
start=$(date +%s)
# shellcheck disable=SC2086  # ARGS is a list of key=value overrides, split on purpose
timeout "${LIMIT:-540}" python3 -m emu3 train-demo "$RECIPE" out="$WORK/demo" $ARGS >"$OUT/train.log" 2>&1
echo "train-demo rc $? after $(($(date +%s) - start)) s"
python3 benchmarks/demo_transfer.py pack "$WORK/demo" "$OUT"
tr '\r' '\n' <"$OUT/train.log" | grep -E "^== |reading check|pairs|tokenised|written|min$|Error|error" | tail -40
echo "unpack here: python benchmarks/demo_transfer.py unpack $OUT $VQ <dest> --config $RECIPE --" $ARGS | tr -s ' \n' ' '
echo
