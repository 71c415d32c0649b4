#!/usr/bin/env bash
# The decoder half of the video target on one CUDA GPU: `benchmarks/video_scaling.py` with a motion
# tokenizer trained elsewhere (`bash benchmarks/vq_motion.sh OUT` on the CPU: VQ=OUT/clips4/model), the
# demo decoder's shape pretrained on caption -> video examples alone, then `emu3 eval`'s video extension.
#
#   VQ=runs/vqm/clips4/model OUT=runs/vdec bash benchmarks/video_decoder_gpu.sh
#
# Writes to $OUT: video_scaling.json (each stage's seconds and scores, saved after every stage), log,
# metrics.jsonl (the pretraining curve) and model.tgz: the pretrained decoder in bf16 without its vision
# tokenizer (small enough to bring back from a rented machine), with its config, tokenizer and defaults;
# `python benchmarks/video_decoder_unpack.py` rebuilds a loadable folder from it and VQ.
# MORE=N (after the benchmark, while the machine is still held: MORE=256 ... again) scores the same decoder's
# greedy extensions on the evaluation's first N clips, each clip's error kept (extension_greedy_N.json),
# for an interval. LIMIT (seconds, default 520) bounds the benchmark; ARGS adds video_scaling.py options. Runs with
# `python3` from the checkout (PYTHONPATH), as benchmarks/train_demo_gpu.sh does.
set -uo pipefail
VQ=${VQ:?set VQ to the motion tokenizer folder}
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
work=/tmp/emu3-vdec
if [ -n "${MORE:-}" ]; then  # the decoder of an earlier call on this machine, greedy, N clips
  python3 - "$work/pretrain/model" "$MORE" "$OUT/extension_greedy_$MORE.json" <<'EOF'
import json
import sys
from pathlib import Path

from benchmarks.video_scaling import extension

r = extension(Path(sys.argv[1]), int(sys.argv[2]), "cuda", greedy=True)
Path(sys.argv[3]).write_text(json.dumps(r, indent=1) + "\n")
print({k: v for k, v in r.items() if not isinstance(v, list)})
EOF
  exit
fi
# shellcheck disable=SC2086  # ARGS is a list of options, split on purpose
timeout "${LIMIT:-520}" python3 benchmarks/video_scaling.py --device cuda --vq-init "$VQ" --vq-steps 0 \
  --clips 20000 --steps 4000 --floor-n 8 --out "$work" -o "$OUT/video_scaling.json" ${ARGS:-} >"$OUT/log" 2>&1
echo "video_scaling rc $?"
cp "$work/pretrain/metrics.jsonl" "$OUT/" 2>/dev/null
model=$work/pretrain/model
if [ -f "$model/model.safetensors" ]; then
  mkdir -p "$work/pack"
  python3 - "$model/model.safetensors" "$work/pack/decoder_bf16.safetensors" <<'EOF'
import sys

import torch
from safetensors.torch import load_file, save_file

state = load_file(sys.argv[1])
save_file({k: v.to(torch.bfloat16) for k, v in state.items() if not k.startswith("vqmodel.")}, sys.argv[2])
EOF
  cp "$model"/*.json "$work/pack/" && tar czf "$OUT/model.tgz" -C "$work/pack" .
fi
tr '\r' '\n' <"$OUT/log" | grep -v -E 'step/s|s/step|rec/s|it/s' | tail -30
cat "$OUT/video_scaling.json"
