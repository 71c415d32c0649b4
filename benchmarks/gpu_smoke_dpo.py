"""A quick check of train-demo's DPO path on a device (default cuda): preference pairs sampled from the
shipped model there, then two DPO steps there. benchmarks/train_demo_gpu.sh runs it before the long run.

    python benchmarks/gpu_smoke_dpo.py [DEVICE] [OUT]
"""

import sys
import time
from pathlib import Path

from emu3.commands import default_model_folder
from emu3.recipes import dpo
from emu3.recipes.common import DataConfig
from emu3.recipes.train_demo import DemoConfig, dpo_prompts, sample_preference_pairs
from emu3.train.optim import OptimConfig

device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
out = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/emu3-dpo-smoke")
start = time.perf_counter()
model = default_model_folder()
prompts, scorers = dpo_prompts(DemoConfig(dpo_prompts=16))
stats = sample_preference_pairs(model, prompts, scorers, out / "prefs", device=device)
print(f"pairs on {device}: {stats}")
data = DataConfig(corpus=str(out / "prefs"), batch_size=2)
optim = OptimConfig(lr=1e-6, min_lr=1e-7, warmup_steps=1)
cfg = dpo.DPOConfig(init=str(model), out=str(out / "dpo"), data=data, steps=2, optim=optim, save_every=2, device=device)
dpo.main(cfg)
print(f"DPO smoke on {device} passed in {time.perf_counter() - start:.1f} s")
