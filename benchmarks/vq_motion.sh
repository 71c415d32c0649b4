#!/usr/bin/env bash
# The video tokenizer that reached a 2.08 px floor at 72 px (1.85 at 64 px, the object found in 99.8%
# of frames; docs/history.md "Video: the tokenizer holds it back", benchmarks/results/vq_clip_length.json; rerun 2026-11-28: 2.11 px, benchmarks/results/video_decoder_h200/),
# as one command: the six `emu3 train-vq` runs of that table, in order, from the shipped tokenizer,
# whole images throughout (no tiles), 1,700 steps, the last 900 with 16-frame clips; then three runs with
# images on tiles (tile1-3, the shipped model's tokenizer since 2026-11-28). Then their floors.
#
#   bash benchmarks/vq_motion.sh OUT [DEVICE]    # about 57 minutes on a 2-core AVX512 CPU in fp32, alone
#
# A finished run is skipped, so a stopped chain resumes at the run it was in. STEPS_DIV=N divides every
# run's steps by N (a smoke test of the chain). Run from the repository root with the venv active.
set -euo pipefail
out=${1:?usage: bash benchmarks/vq_motion.sh OUT [DEVICE]}
device=${2:-cpu}
div=${STEPS_DIV:-1}

run() {  # run NAME STEPS ARGS...: one train-vq run into OUT/NAME, unless it is already there
  local name=$1 steps=$(( $2 / div > 0 ? $2 / div : 1 ))
  shift 2
  [ -f "$out/$name/model/config.json" ] && return
  emu3 train-vq configs/train_vq/demo.yaml out="$out/$name" steps="$steps" device="$device" image_size=72 \
    eval_images=16 bf16=false vq.tile_size=0 "$@"
}

# 4-frame clips, three quarters of each batch of 8 (runs/vf/cb512 and cb512b in the table)
run whole1 200 init=emu3/assets/demo_model batch_size=8 video_fraction=0.75 \
  optim.lr=0.0005 optim.min_lr=0.00005 optim.warmup_steps=20
run whole2 600 init="$out/whole1/model" batch_size=8 video_fraction=0.75 \
  optim.lr=0.0005 optim.min_lr=0.00005 optim.warmup_steps=20
# 16-frame clips, half of each batch of 6 (f16, f16b, f16c, f16d)
run clips1 150 init="$out/whole2/model" batch_size=6 video_fraction=0.5 clip_frames=16 video_clips=800 \
  optim.lr=0.0002 optim.min_lr=0.00002 optim.warmup_steps=10
run clips2 300 init="$out/clips1/model" batch_size=6 video_fraction=0.5 clip_frames=16 video_clips=4000 \
  optim.lr=0.0003 optim.min_lr=0.00003 optim.warmup_steps=10
run clips3 150 init="$out/clips2/model" batch_size=6 video_fraction=0.5 clip_frames=16 video_clips=4000 \
  optim.lr=0.0002 optim.min_lr=0.00002 optim.warmup_steps=10
run clips4 300 init="$out/clips3/model" batch_size=6 video_fraction=0.5 clip_frames=16 video_clips=4000 \
  optim.lr=0.00015 optim.min_lr=0.000015 optim.warmup_steps=10

# Then images on 24 px tiles, videos still whole-frame (tile_videos=false), half then a third of each batch of 6
# 16-frame clips: the tokenizer of the shipped model since 2026-11-28 (docs/history.md, "The shipped model on
# that tokenizer"): images round-trip 0.87 / 0.955 / 1.0 on the checker after each run, video floor
# 2.01 / 1.89 / 1.75 px at 72 px (1.56 at 64). About 17 more minutes.
run tile1 200 init="$out/clips4/model" batch_size=6 video_fraction=0.5 clip_frames=16 video_clips=4000 \
  vq.tile_size=24 vq.tile_videos=false optim.lr=0.0003 optim.min_lr=0.00003 optim.warmup_steps=10
run tile2 300 init="$out/tile1/model" batch_size=6 video_fraction=0.34 clip_frames=16 video_clips=4000 \
  vq.tile_size=24 vq.tile_videos=false optim.lr=0.0005 optim.min_lr=0.00005 optim.warmup_steps=10
run tile3 300 init="$out/tile2/model" batch_size=6 video_fraction=0.34 clip_frames=16 video_clips=4000 \
  vq.tile_size=24 vq.tile_videos=false optim.lr=0.0005 optim.min_lr=0.00005 optim.warmup_steps=10

PYTHONPATH=. python benchmarks/vq_floors.py "$out/clips4/model" "$out/tile3/model" -o "$out/vq_floors.json"
echo "tokenizers: $out/clips4/model (whole images), $out/tile3/model (tiled images); floors: $out/vq_floors.json"
