"""The shipped model's last step (2026-11-28): train-demo's gen stage rerun on the CPU from a GPU run's
DPO model (its last round, `dpo_rounds`), with videos (`gen_video_weight`), then the shipped layout.

`benchmarks/train_demo_video_gpu.sh` trained every stage on one H200 and `demo_transfer.py unpack`
rebuilt them in RUN (RUN/dpo/model, RUN/model with chat/). With `dpo_rounds=N` (N > 1), the DPO rounds
after the first that RUN lacks run here first, into RUN, as train-demo's own stages dpo_r2, ... do (pairs
sampled from the round before, then DPO from and against it). The GPU's corpus did not come back (over the
files a rented machine returns), so this tokenises what the gen stage reads, and only that, with the
run's own text tokenizer: the world's 20,000 captioned scenes and the real digits twice (kind "t2i"),
the digits to draw ("t2i:digit") and the first CLIPS of the world's clips ("t2v"; the GPU corpus has
20,000). Then the gen stage from DPO's last round with the shipped recipe's options (and any given here), and the
export: the gen model in RUN's layout with RUN/model/chat beside it, into OUT/model.

    python benchmarks/demo_gen_cpu.py runs/vdemo runs/vqm/tile3/model runs/vgen --clips 8000

(the shipped model's command; the options are configs/train_demo/shipped.yaml's, `dpo_rounds=2
gen_steps=3000 gen_video_weight=1 gen_lr=2e-4` among them, and options after `--` override them:
round two about 6 minutes, the corpus 7, the gen stage 29).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

# The shipped model's train-demo options (also what benchmarks/train_demo_video_gpu.sh runs)
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "train_demo" / "shipped.yaml"


def corpus(run: Path, vq_folder: Path, out: Path, clips: int, cfg) -> None:
    from emu3.convert.vq import load_vision_tokenizer, save_vision_tokenizer
    from emu3.data.pretokenize import PretokenizeConfig, pretokenize
    from emu3.tokens.text import load_text_tokenizer
    from emu3.worlds import data

    vq = load_vision_tokenizer(vq_folder)
    save_vision_tokenizer(vq, out / "vq" / "model")
    tok = load_text_tokenizer(run / "dpo" / "model")
    tok.save(out / "tokenizer")
    size, seed = cfg.image_size, cfg.seed
    records = list(data.shapes_captions(cfg.captions, seed=seed, image_size=size))
    digits = [{**r, "understanding": 0.0} for r in data.digit_captions("train", image_size=size)]
    records += digits * cfg.digit_repeats
    records += list(data.motion_videos(clips, seed=seed, frames=16, image_size=size))
    random.Random(seed).shuffle(records)
    records += list(data.digit_drawings(image_size=size))
    pcfg = PretokenizeConfig(understanding=0.0, null_caption=0.1, shard_size=4000, batch_size=8)
    print(pretokenize(records, out / "tokens", vq, tok, pcfg))


def later_dpo_rounds(run: Path, cfg) -> dict:
    """DPO rounds 2..cfg.dpo_rounds that `run` lacks, trained in `run` with train-demo's own calls; returns
    each new round's pair counts for the training log."""
    from emu3.recipes import dpo, train_demo

    made = {}
    for r in range(2, cfg.dpo_rounds + 1):
        stage, before = train_demo.dpo_stage(r), run / train_demo.dpo_stage(r - 1) / "model"
        prefs = run / ("preferences" + train_demo.round_suffix(r))
        if (run / stage / "model" / "config.json").exists():
            continue
        if not (prefs / "meta.json").exists():
            made[stage + "_data"] = train_demo._preference_pairs(cfg, before, prefs, r)
        dpo.main(train_demo.dpo_config(cfg, before, prefs, run / stage))
    return made


def main() -> None:
    from emu3.configuration import load
    from emu3.recipes import sft, train_demo

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the GPU run, unpacked (RUN/dpo/model, RUN/model/chat)")
    p.add_argument("vq", type=Path, help="its vision tokenizer")
    p.add_argument("out", type=Path)
    p.add_argument("--clips", type=int, default=8000)
    p.add_argument("overrides", nargs="*", help="train-demo options over configs/train_demo/shipped.yaml (after --)")
    a = p.parse_args()
    cfg = load(train_demo.DemoConfig, RECIPE, [f"out={a.out}", f"vq_from={a.vq}", *a.overrides])
    if not (a.out / "tokens" / "meta.json").exists():
        corpus(a.run, a.vq, a.out, a.clips, cfg)
    rounds = later_dpo_rounds(a.run, cfg)
    start = train_demo.tuned_stage(cfg)  # the model the gen stage starts from: DPO's last round (dpo_rounds)
    if not (a.out / start / "model").exists():
        shutil.copytree(a.run / start / "model", a.out / start / "model")
    base = train_demo.pretrain_config(cfg, a.out, a.out / "tokenizer", a.out / "vq", a.out / "tokens")
    gen = train_demo.gen_config(train_demo.sft_config(base, cfg), cfg)
    if not (a.out / "gen" / "model" / "config.json").exists():
        sft.main(gen)
    final = a.out / "model"
    train_demo._export(a.out / "gen" / "model", final, cfg)
    shutil.copytree(a.run / "model" / train_demo.CHAT_FOLDER, final / train_demo.CHAT_FOLDER, dirs_exist_ok=True)
    log = json.loads((a.run / "model" / "training_log.json").read_text())
    log["config"] = {k: str(v) for k, v in cfg.__dict__.items()}
    log.update(train_demo.first_and_last_metrics(a.out, ("gen",)))
    log.update(rounds)
    later = [train_demo.dpo_stage(r) for r in range(2, cfg.dpo_rounds + 1)]
    log.update(train_demo.first_and_last_metrics(a.run, later))
    log["stages"] = {
        **log.get("stages", {}),
        "gen": f"rerun on the CPU by benchmarks/demo_gen_cpu.py ({a.clips} clips)",
    }
    (final / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    print(f"exported {final}")


if __name__ == "__main__":
    main()
