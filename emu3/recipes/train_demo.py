"""`emu3 train-demo`: the shipped demo model, reproduced from nothing on a CPU.

Stages (each skipped when its output already exists, so an interrupted run resumes):
    1. vq         train a vision tokenizer on world images and motion clips (train_vq recipe), whole
                  images first, then fine-tuned on tiles if its config tiles (local codes), optionally
                  last with more clips per batch; or, with `vq_from`, copy a trained one
    2. tokenizer  train a small BPE on the world's captions, questions and answers
    3. tokens     pretokenize the world: captions (both directions), digits, Q&A, videos
    4. pretrain   next-token pretraining, text 1.0 / vision 0.5 (pretrain recipe)
    5. sft        fine-tuning on Q&A and captions (sft recipe)
    6. dpo        sample several images per prompt, rank them with the world's checker (standing in
                  for the paper's human raters), train on best-vs-worst pairs (dpo recipe); with
                  `dpo_rounds` > 1 again (dpo_r2, ...) on fresh prompts, from the round before
    6b. gen       optional: a generation-only fine-tune of the DPO model (text -> image, the real
                  digits drawn more often), exported as the folder's generation model
    6c. chat      optional: an understanding-only fine-tune (Emu3-Chat), exported as chat/
    7. export     the final model folder, with its generation defaults and training log
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from emu3.configuration import load
from emu3.data.shards import Corpus
from emu3.generate.pipeline import CHAT_FOLDER
from emu3.recipes.common import DataConfig, ModelConfig, TrainConfig, check_device
from emu3.train.losses import LossWeights
from emu3.train.optim import OptimConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo_model"  # `vq_from=shipped`
READING_WARN = 0.75  # DemoConfig.reading_check: below it, train-demo warns (guessing between two: 0.5)
READING_FILE = "reading_check.json"  # in <out>/pretrain
# 72 px images: the world's 3x3 layout cells are then 24 px, exactly 3x3 codes of the 8x tokenizer, so
# an object meets the code grid the same way in every cell (at 64 px the 21.3 px cells do not align,
# and the same shape needs different codes in different cells; see configs/train_vq/demo.yaml).
DEMO_SIZE = 72
DEMO_MODEL = ModelConfig(dim=256, n_layers=6, n_heads=4, n_kv_heads=2, ffn_dim=688, max_seq_len=512,
                         image_area=DEMO_SIZE * DEMO_SIZE)  # fmt: skip


PRETRAIN_KINDS = ("t2i", "i2t", "qa", "t2v", "v2t")  # every kind the world's records make, untagged
CHAT_FROM = ("pretrain", "sft", "dpo")  # the stages the understanding model may start from


@dataclass(frozen=True)
class DemoConfig:
    out: str = "runs/demo"
    export: str = ""  # where the final model goes (default: <out>/model)
    image_size: int = DEMO_SIZE
    captions: int = 20000  # shapes scenes with captions
    qa_images: int = 6000  # shapes scenes with questions about them,
    qa_per_image: int = 5  # asked as one conversation (the image's tokens are paid for once per image)
    videos: int = 600  # motion clips of 16 frames
    use_digits: bool = True  # scikit-learn digits (needs emu3[world])
    digit_repeats: int = 2  # copies of each real training digit in the corpus
    # Randomly moved copies of each training digit, image -> text only, for SFT only (kind "i2t:aug"; the
    # pretraining mix is the world's own data). Without them the model read 96% of the training digits
    # and 91% of the test split; 120 steps on such copies from the SFT model: 95%, on plain copies: 91%.
    digit_augment: int = 2
    vq_config: str = str(CONFIGS / "train_vq" / "demo.yaml")
    vq_steps: int = 800  # whole-image training
    # Then, if the VQ config tiles (tile_size > 0), fine-tuning rounds on tiles, each with a fresh warm-up
    # and decay at `vq_tile_lr`. Trained on tiles from the start, the tokenizer learns several times more
    # slowly (measured: 19.9 dB held-out after 1000 steps, against 29.4 dB whole-image): GroupNorm over
    # a 3x3-code tile removes each channel's mean, which the whole-image stage has already learnt around.
    vq_tile_rounds: tuple[int, ...] = (800,)
    vq_tile_lr: float = 1e-3
    # > 0: a last tiled round with `vq_clip_fraction` of each batch motion clips, at half `vq_tile_lr`.
    # The rounds above see one 4-frame clip per batch of 16 (the VQ config's video_fraction), and that
    # does not carry over from whole images to tiled clips: a 16-frame round trip of the shipped
    # tokenizer finds the object in 24% of frames, 27 px off. Off by default: a run with it (600 tiled
    # steps, then 200 with a quarter clips; 66% found, 5.9 px) left video extension as bad as before and
    # scored lower elsewhere (docs/history.md, "Tried on the tiled model").
    vq_clip_steps: int = 0
    vq_clip_fraction: float = 0.25
    # Frames per training clip in every VQ round (0: the VQ config's, 4 for the shipped tokenizer) and
    # whether videos are tiled like images. A 4-frame clip is one latent frame, so the temporal layers
    # never learn to read a chunk after another; 16 as the evaluation's clips, with whole-frame videos,
    # is what the next GPU run is for (docs/history.md, "Video: the tokenizer holds it back").
    vq_clip_frames: int = 0
    vq_tile_videos: bool = True
    # "" trains the vision tokenizer (the settings above). Else a folder holding a trained one (a VQ
    # folder, or a model folder with its VQ inside), or "shipped" for the shipped model's: its weights
    # are copied to <out>/vq/model and the VQ stage is skipped. With the tokenizer shipped before
    # 2026-11-28 and the default seed, pretraining and SFT repeated that model's exactly (VQA 0.884 /
    # 0.932); the one shipped since is the motion tokenizer (docs/history.md, "The shipped model on that
    # tokenizer"). Whether pretraining
    # learns which colour goes with which shape is a draw (see `reading_check`): one of six measured
    # draws of this recipe did, the shipped one; the same tokenizer with its codes renamed did not, so
    # the draw is the decoder's training (its start, its data order) against the codes, not the
    # tokenizer's quality (docs/history.md, "Today's recipe, retrained from scratch").
    vq_from: str = ""
    text_vocab: int = 400
    model: ModelConfig = field(default_factory=lambda: DEMO_MODEL)
    seq_len: int = 416  # a 16-frame 72 px video with its caption is about 385 tokens
    batch_size: int = 16
    # Rows per pretraining step (0: batch_size); the later stages keep batch_size. A GPU run with many
    # clips (videos=20000) pretrains on 32 rows a step, as benchmarks/video_scaling.py's decoder did.
    pretrain_batch_size: int = 0
    pretrain_steps: int = 1350
    pretrain_lr: float = 1e-3
    # After pretraining, this many held-out "what colour is the <shape>?" questions about two objects of
    # other shapes and colours (`emu3 eval --tasks colour_binding`), logged as training_log's
    # "pretrain_reading"; 0: off (about 3 s at 200). 0.5 / 0.5: the decoder reads both colours but guesses
    # which shape has which. Six draws of pretraining measured: the shipped one 0.89, five 0.50-0.69.
    reading_check: int = 200
    # When that check is below READING_WARN: this many steps of `reading_kinds` (the question
    # conversations, kind "qa", loss on the answers, and some drawings) at the pretraining learning
    # rate, from the pretrained model (stage "reading", <out>/reading), checked again (training_log's
    # "reading_after"); SFT, and a chat model with chat_from=pretrain, start from it. In pretraining
    # the answers are 2.4% of the weighted loss (a few tokens against every image's codes), and whether
    # the decoder learns to look things up from so little is a draw; from the answers alone it does: two
    # failed draws bound colours to shapes after 300 steps (0.52 and 0.525 -> 0.99 and 0.985), and "is
    # there a <colour> <shape>?" came later (yes-no AUC 0.50 -> 0.93 in 300 more; docs/history.md, "Learning to
    # read"). Questions alone (600 steps) cost drawing: on the fresh-tokenizer draw, VQA (chat/) 0.920
    # against 0.790 without the stage, text-to-image (gen) 0.860 against 0.914. Hence `reading_kinds`:
    # with the drawings a third of the stage's examples, and 900 steps (the questions still get 600
    # steps' worth), the same draw ends at VQA 0.960 (chat/), text-to-image 0.918 (gen), digits 0.905
    # and 0.953: the understanding, drawing and digit targets met (one draw measured; docs/history.md, "Learning
    # to read"). A draw that passes the check (the shipped one) skips the stage. 0: off (then a failed
    # check warns). About 9 minutes here.
    reading_steps: int = 900
    # What the reading stage trains on; a kind named n times is drawn n times as often, per example:
    # 6,000 question conversations x 8 against 22,874 captions -> images, two thirds questions.
    reading_kinds: tuple[str, ...] = ("qa",) * 8 + ("t2i",)
    sft_steps: int = 300
    # SFT draws the questions this many times as often as their share of the corpus. 2 with the moved
    # digits' extra reading examples: against the previous shipped model (1, no moved digits), VQA
    # +0.005 (2 SE 0.008; seeds 0-6, 3500 questions), text-to-image +0.005 (2 SE 0.011; seeds 0-3),
    # digit recognition 0.922 against 0.911. With 1 and the moved digits: recognition 0.931, VQA -0.009
    # (2 SE 0.008), text-to-image +0.002.
    sft_qa_weight: int = 2
    # True: SFT asks each question alone, before its image (kind "qa_first"; with `question_twice` also
    # again after it), plus `where_scenes` scenes of 2-3 objects with a where-question about each object
    # (kind "qa_first:where", drawn `sft_where_weight` times as often as their share); the exported model
    # is asked that way. Pretraining keeps BAAI's image-then-question conversations either way. Read
    # after the question, each image token can check itself against what is asked, which "where is the
    # X?" needs (docs/history.md, "Where"). Off: in 300-470 SFT steps, enough questions for VQA >= 0.95 leave too
    # few images for text-to-image >= 0.90. `question_first=true question_twice=true sft_qa_weight=1
    # sft_steps=400 dpo_prompts=600` (59 minutes by stage): VQA 0.968, text-to-image 0.884 (seed 0).
    question_first: bool = False
    question_twice: bool = False
    where_scenes: int = 4000
    sft_where_weight: int = 3
    sft_t2i_weight: int = 1  # the same for the text-to-image examples
    # > 0: also an understanding-only fine-tune (the paper's Emu3-Chat beside Emu3-Gen), exported inside
    # the model folder as chat/, which `emu3 chat`, `emu3 demo` and `emu3 eval` answer with. It starts
    # from the `chat_from` stage's model ("dpo": the DPO model, which is the generation model unless
    # `gen_steps`; "pretrain" or "sft") at the SFT learning rate, on image -> text examples only: the
    # questions (with `chat_question_first`, each question before and again after its image, plus the
    # where-set `sft_where_weight` times; else as SFT asks them), captions and `chat_digit_weight` times
    # the moved digits. Off by default: the shipped chat/ came from `chat_steps=500 chat_digit_weight=5`
    # (VQA 0.976 against the generation model's 0.930, digit recognition 0.961; 400 steps with the digits
    # x3 read 0.944 of them), about 10 more minutes than train-demo's hour allows (docs/history.md, "Emu3-Chat").
    chat_steps: int = 0
    chat_from: str = "dpo"
    chat_question_first: bool = True
    chat_digit_weight: int = 2
    # > 0 (with chat_steps): then `chat_round_trip_steps` more steps of the understanding model on the chat
    # stage's examples and as many again whose images went through the vision tokenizer and back
    # (decode(encode(image)), kinds "<kind>:rt" / "<kind>_rt"): `chat_round_trip_scenes` question
    # scenes, half as many where-scenes, as many captioned scenes, and each moved digit once. That is how
    # the model's own generated images look, and the tokenizer gives them other codes than the scenes
    # they show (a one-level shift of the background changes most of an image's codes), so without
    # these the chat/ shipped at 105e7ed answered 0.266 of the questions about its generation model's
    # drawings (VQA on rendered scenes 0.976). At 1e-4, decaying to 1e-5. Off by default; the shipped
    # chat/ came from `chat_round_trip_steps=400 chat_round_trip_weight=2`: 0.920 on its drawings, VQA
    # 0.994 (docs/history.md, "Reading its own drawings").
    chat_round_trip_steps: int = 0
    chat_round_trip_scenes: int = 2000
    chat_round_trip_weight: int = 1  # the round-tripped kinds drawn this many times as often as their share
    # > 0 (with chat_round_trip_steps): that stage also reads JPEG copies (quality 50-95, as a photo library
    # or a screenshot keeps them) of that many more scenes, drawn as the round-tripped ones (kinds
    # "<kind>:jpeg" / "<kind>_jpeg", as often as those). Off by default: the chat/ shipped at 5093923
    # answers 0.762 of the questions about JPEG copies (quality 85) and 0.994 on the scenes; with 2000 of
    # them, 0.830 and 0.978 (docs/history.md, "Reading its own drawings").
    chat_jpeg_scenes: int = 0
    # > 0: a generation-only fine-tune (the paper's Emu3-Gen, specialised as chat/ is for understanding)
    # of the DPO model, exported as the folder's generation model in its place: `gen_steps` at `gen_lr`
    # on text -> image examples only, the world's ("t2i": the shapes scenes and the real digits) and
    # `gen_digit_weight` times one more copy of the real training digits (kind "t2i:digit"), so that
    # about half of what it draws are digits. Off by default (about 5 more minutes); the shipped
    # generation model came from `gen_steps=300`: generated digits 0.910 against the DPO model's 0.850,
    # text-to-image 0.928 against 0.910 (seed 0), and it no longer captions (chat/ does; docs/history.md,
    # "Emu3-Gen"). The chat model still starts from the DPO model (`chat_from`), not from this one.
    gen_steps: int = 0
    gen_digit_weight: int = 10
    # The gen stage also draws videos (kind "t2v", this many times as often as their share), so that the
    # generation model keeps up its video while it specialises on images and digits. 0: images only. The
    # generation model shipped at b7fad92 came from `gen_steps=3000 gen_video_weight=1 gen_lr=2e-4` (from a
    # GPU run's DPO model): video extension 2.08 px at 72 px, against 2.38 after 300 steps on images only
    # and 2.33 for the DPO model; text-to-image 0.932; the one shipped since is the same from a second DPO
    # round (2.06 px; docs/history.md, "The shipped model on that tokenizer"). Needs clips (`videos` > 0).
    gen_video_weight: int = 0
    gen_lr: float = 1e-4
    # torch.compile each decoder block for pretraining and the fine-tunes (+17% tokens/s in
    # benchmarks/train_throughput.json, after about 30 s of compiling per stage). Off: the shipped
    # model was trained without it.
    compile: bool = False
    # 1,000 prompts, 8 images each (about 2,300 pairs from the shipped model), since DPO-Positive
    # (`dpo_positive`): plain DPO on that many pairs lowered text-to-image by 0.058, DPO-Positive raised it
    # (docs/history.md, "DPO-Positive"). Before: 800 prompts, 4 images each.
    dpo_prompts: int = 1000  # 0 (and no digit prompts): no DPO stage; the SFT model is exported
    # Digit captions among DPO's prompts, ranked by a second digit judge. Off: 200 of them (554 pairs, with
    # the 99c6afa run's 427) left generated digits as they were (0.84 at guidance 3 against 0.82, n=100).
    dpo_digit_prompts: int = 0
    dpo_samples: int = 8  # images per prompt; every two whose checker scores differ enough make a pair
    dpo_temperature: float = 1.0  # DPO's samples: the default guidance and top-k, but temperature 1 (not the
    # defaults' 0.6) for more varied samples per prompt, hence more pairs
    dpo_epochs: float = 1.0  # passes over the pairs (more overfits them: measured worse on held-out prompts)
    dpo_lr: float = 5e-6
    # True: no DPO loss where a pair's two images hold the same code (dpo.DPOConfig.mask_shared; they differ
    # in about 14 of 91 tokens). From the shipped SFT model (seeds 7-8, 1,000 prompts): +0.010 over SFT,
    # against +0.005 counting every token; at 4x this learning rate -0.019, against -0.040. On 3,500
    # prompts it scored level with the shipped DPO checkpoint, so the shipped recipe counts every token
    # (docs/history.md, "DPO").
    dpo_mask_shared: bool = False
    dpo_beta: float = 0.5  # with DPO-Positive; plain DPO was measured at 0.1
    # DPO-Positive weight (dpo.DPOConfig.positive): DPO loses the chosen images' likelihood along with the
    # rejected ones' (docs/history.md, "DPO"); this keeps it at the reference's. 0: plain DPO.
    dpo_positive: float = 5.0
    # > 0: DPO on the guided distribution the sampler draws from, at this scale (dpo.DPOConfig.guidance)
    dpo_guidance: float = 0.0
    # > 1: more DPO rounds, each on fresh prompts (`dpo_prompts` more, from another seed) sampled from the
    # previous round's model, which is also its start and reference (stages dpo_r2, dpo_r3, ...). From a
    # fresh run's DPO model, a second round on new prompts: +0.007 (2 SE 0.005) on 4,000 held-out prompts
    # (+0.009, 0.005, in a second run); on round one's prompts again: -0.004 (0.006) (docs/history.md, "A second
    # DPO round"). One by default (the one-hour recipe); the model shipped since 2026-11-28 used two
    # (configs/train_demo/shipped.yaml).
    dpo_rounds: int = 1
    # bf16 autocast in the decoder stages (pretraining, the fine-tunes, DPO) where bf16 is fast (GPUs,
    # AVX512-BF16 CPUs; elsewhere they run in fp32 either way). The vision tokenizer's precision is its
    # VQ config's (`bf16: false` in configs/train_vq/demo.yaml). Unlike the tokenizer, the decoder loses
    # nothing measurable to autocast: with it off, SFT -0.004 (2 SE 0.009) and DPO +0.001 (0.009) on
    # 4,000 prompts, at 31 against 14 minutes of pretraining (docs/history.md, "Decoder precision").
    bf16: bool = True
    threads: int = 0
    # Where every stage computes: "cpu" or e.g. "cuda" (the VQ, the token corpus's encoding, the decoder
    # stages and DPO's sampling); the world's data and the checkers stay on the CPU.
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:  # checked up front, not when the chat stage starts an hour in
        if self.reading_steps < 0 or (self.reading_steps and self.reading_check and self.qa_images <= 0):
            raise ValueError(
                f"reading_steps={self.reading_steps}: expected >= 0, and the reading stage trains on the question "
                "conversations: set qa_images > 0, or reading_steps=0"
            )
        if self.reading_steps and "qa" not in self.reading_kinds:
            raise ValueError(f'reading_kinds={self.reading_kinds}: the reading stage needs the questions ("qa")')
        if self.pretrain_batch_size < 0:
            raise ValueError(f"pretrain_batch_size={self.pretrain_batch_size}: expected >= 0 (0: batch_size)")
        if self.dpo_rounds < 1:
            raise ValueError(f"dpo_rounds={self.dpo_rounds}: expected 1 or more (dpo_prompts=0 turns DPO off)")
        weights = (self.gen_digit_weight, self.gen_video_weight)
        if self.gen_steps < 0 or min(weights) < 0 or (self.gen_steps and self.gen_lr <= 0):
            raise ValueError(
                f"gen_steps={self.gen_steps}, gen_digit_weight={self.gen_digit_weight}, "
                f"gen_video_weight={self.gen_video_weight}, gen_lr={self.gen_lr}: expected steps and weights >= 0 "
                "and, with steps, a positive learning rate"
            )
        if self.gen_steps and self.gen_video_weight and self.videos <= 0:
            raise ValueError(
                f"gen_video_weight={self.gen_video_weight} draws clips, and videos={self.videos} makes none"
            )
        if self.chat_from not in CHAT_FROM:
            raise ValueError(f"chat_from={self.chat_from!r}: expected one of {', '.join(CHAT_FROM)}")
        if self.chat_round_trip_weight < 1:
            raise ValueError(f"chat_round_trip_weight must be at least 1, got {self.chat_round_trip_weight}")
        if self.chat_round_trip_steps > 0 and self.chat_steps <= 0:
            raise ValueError("chat_round_trip_steps continues the chat stage: set chat_steps too")
        if self.chat_jpeg_scenes < 0 or (self.chat_jpeg_scenes and self.chat_round_trip_steps <= 0):
            raise ValueError(
                f"chat_jpeg_scenes={self.chat_jpeg_scenes}: expected >= 0, and the JPEG copies are read by the "
                "round-trip stage: set chat_round_trip_steps too"
            )
        if self.chat_steps > 0 and self.chat_from == "dpo" and not runs_dpo(self):
            raise ValueError("chat_from=dpo with no DPO stage (dpo_prompts=0): use chat_from=sft")
        if self.chat_steps > 0 and self.chat_question_first and self.question_first and not self.question_twice:
            raise ValueError(
                "chat_question_first asks each question twice, and SFT would read the same examples: "
                "set question_twice=true with question_first=true, or chat_question_first=false"
            )


def _stage(name: str, done: Path, log: dict) -> bool:
    """True if the stage must run; prints a banner."""
    if done.exists():
        print(f"== {name}: already done ({done})")
        log.setdefault("stages", {})[name] = "reused"
        return False
    print(f"== {name}")
    return True


def main(cfg: DemoConfig) -> Path:
    from emu3.recipes import dpo, pretrain, sft, train_vq

    check_device(cfg.device)  # before an hour of stages, not at the first one that moves a tensor
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log: dict = {"config": {k: str(v) for k, v in cfg.__dict__.items()}, "seconds": {}}
    started = time.perf_counter()

    # 1. vision tokenizer
    t0 = time.perf_counter()
    vq_dir = out / "vq"
    if _stage("vq", vq_dir / "model" / "config.json", log):
        if cfg.vq_from:
            log.setdefault("stages", {})["vq"] = f"copied from {copy_vision_tokenizer(cfg.vq_from, vq_dir)}"
        else:
            for stage_cfg in vq_configs(cfg):
                if not (Path(stage_cfg.out) / "model" / "config.json").exists():
                    train_vq.main(stage_cfg)
    log["vq_psnr"] = (vq_dir / "psnr.txt").read_text().strip().splitlines() if (vq_dir / "psnr.txt").exists() else []
    log["seconds"]["vq"] = round(time.perf_counter() - t0, 1)

    # 2-3. tokenizer and token corpus
    t0 = time.perf_counter()
    tok_dir, corpus = out / "tokenizer", out / "tokens"
    if _stage("tokens", corpus / "meta.json", log):
        _tokenize_world(cfg, vq_dir / "model", tok_dir, corpus)
    log["seconds"]["tokens"] = round(time.perf_counter() - t0, 1)

    # 4. pretraining
    t0 = time.perf_counter()
    base = pretrain_config(cfg, out, tok_dir, vq_dir, corpus)
    if _stage("pretrain", out / "pretrain" / "model" / "config.json", log):
        pretrain.main(replace(base, data=replace(base.data, batch_size=cfg.pretrain_batch_size or cfg.batch_size)))
        if cfg.reading_check > 0:
            _check_reading(out / "pretrain", cfg, repair=cfg.reading_steps > 0)
    if (out / "pretrain" / READING_FILE).exists():  # kept beside the stage, so a resumed run logs it too
        log["pretrain_reading"] = json.loads((out / "pretrain" / READING_FILE).read_text())
    log["seconds"]["pretrain"] = round(time.perf_counter() - t0, 1)

    # 4b. the reading stage, for a pretrained decoder that failed the reading check
    start = out / "pretrain" / "model"
    if needs_reading_stage(cfg, log.get("pretrain_reading")):
        t0 = time.perf_counter()
        if _stage("reading", out / "reading" / "model" / "config.json", log):
            pretrain.main(reading_config(base, cfg))
        if not (out / "reading" / READING_FILE).exists():  # also after a stop between training and check
            _check_reading(out / "reading", cfg, repair=False)
        log["reading_after"] = json.loads((out / "reading" / READING_FILE).read_text())
        start = out / "reading" / "model"
        log["seconds"]["reading"] = round(time.perf_counter() - t0, 1)

    # 5. supervised fine-tuning (answers, captions, images; lower learning rate)
    t0 = time.perf_counter()
    sft_cfg = sft_config(base, cfg, init=start)
    if _stage("sft", out / "sft" / "model" / "config.json", log):
        _write_pipeline_defaults(out / "pretrain" / "model", cfg, fine_tuned=False)
        sft.main(sft_cfg)
        _write_pipeline_defaults(out / "sft" / "model", cfg)  # asked as fine-tuned (question_first); DPO copies it
    log["seconds"]["sft"] = round(time.perf_counter() - t0, 1)

    # 6. preference optimisation with checker-ranked samples
    t0 = time.perf_counter()
    if runs_dpo(cfg):
        start = out / "sft" / "model"
        for r in range(1, cfg.dpo_rounds + 1):  # each round from (and against) the one before
            stage, prefs = dpo_stage(r), out / ("preferences" + round_suffix(r))
            if _stage(stage + "-data", prefs / "meta.json", log):
                log[stage + "_data"] = _preference_pairs(cfg, start, prefs, r)
            if _stage(stage, out / stage / "model" / "config.json", log):  # its pairs are read only if it runs
                dpo.main(dpo_config(cfg, start, prefs, out / stage))
            start = out / stage / "model"
        log["seconds"]["dpo"] = round(time.perf_counter() - t0, 1)

    # 6b. optional: a generation-only fine-tune, exported as the generation model
    if cfg.gen_steps > 0:
        t0 = time.perf_counter()
        if _stage("gen", out / "gen" / "model" / "config.json", log):
            _check_gen_corpus(cfg, corpus)
            sft.main(gen_config(sft_cfg, cfg))
        log["seconds"]["gen"] = round(time.perf_counter() - t0, 1)

    # 6c. optional: an understanding model beside the generation model
    if cfg.chat_steps > 0:
        t0 = time.perf_counter()
        if _stage("chat", out / "chat" / "model" / "config.json", log):
            sft.main(chat_config(sft_cfg, cfg))
        log["seconds"]["chat"] = round(time.perf_counter() - t0, 1)
    if cfg.chat_round_trip_steps > 0:
        t0 = time.perf_counter()
        if _stage("chat-rt", out / "chat_rt" / "model" / "config.json", log):
            sft.main(chat_round_trip_config(sft_cfg, cfg))
        log["seconds"]["chat_rt"] = round(time.perf_counter() - t0, 1)

    # 7. export
    final = Path(cfg.export) if cfg.export else out / "model"
    _export(out / generation_stage(cfg) / "model", final, cfg)
    if cfg.chat_steps > 0:
        export_chat(out / ("chat_rt" if cfg.chat_round_trip_steps > 0 else "chat") / "model", final, cfg)
        print(f"understanding model written to {final / CHAT_FOLDER}")
    log["seconds"]["total"] = round(time.perf_counter() - started, 1)
    dpo_stages = map(dpo_stage, range(1, cfg.dpo_rounds + 1))
    log.update(first_and_last_metrics(out, ("pretrain", "reading", "sft", *dpo_stages, "gen", "chat", "chat_rt")))
    (final / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    print(f"demo model written to {final} in {log['seconds']['total'] / 60:.1f} min")
    return final


# ---------------------------------------------------------------- stages


def reading_check(model_dir: Path, cfg: DemoConfig) -> dict:
    """`cfg.reading_check` colour-binding questions to the model (see DemoConfig.reading_check), printed.
    The measure is emu3 eval's task itself (a top-layer import, so that the log and `emu3 eval --tasks
    colour_binding` always agree)."""
    from emu3.eval.world import colour_binding
    from emu3.generate.pipeline import Pipeline

    pipe = Pipeline.load(model_dir, device=cfg.device)
    r = colour_binding(pipe, n=cfg.reading_check, seed=cfg.seed)
    out = {"colour_binding": round(r["accuracy"], 4), "other_colour": round(r["other"], 4), "n": cfg.reading_check}
    print(f"reading check ({model_dir}): {out['colour_binding']:.3f} of {cfg.reading_check} two-object questions "
          f"'what colour is the <shape>?' right, {out['other_colour']:.3f} the other object's colour")  # fmt: skip
    return out


def _check_reading(stage_dir: Path, cfg: DemoConfig, repair: bool) -> dict:
    """The reading check of <stage_dir>/model, written to <stage_dir>/READING_FILE; below READING_WARN,
    says what happens next: the reading stage (`repair`), or a warning with the remedies."""
    _write_pipeline_defaults(stage_dir / "model", cfg, fine_tuned=False)
    reading = reading_check(stage_dir / "model", cfg)
    (stage_dir / READING_FILE).write_text(json.dumps(reading, indent=2) + "\n")
    if reading["colour_binding"] >= READING_WARN:
        return reading
    if repair:
        print(f"below {READING_WARN}: this decoder has not learnt which colour goes with which shape (0.5: it "
              f"guesses); the reading stage trains it on {'+'.join(sorted(set(cfg.reading_kinds)))} (the question "
              f"conversations first) for {cfg.reading_steps} steps before SFT")  # fmt: skip
    else:
        print(
            f"WARNING: below {READING_WARN}: this decoder has not learnt which colour goes with which shape (0.5: "
            "it guesses), so expect the understanding targets to be missed. The reading stage (reading_steps, "
            f"{DemoConfig.reading_steps} by default) trains it on the questions (with some drawings) after "
            "pretraining, which has taught such draws; `vq_from=shipped` with the default seed repeats the "
            "shipped model's draw exactly (docs/history.md, "
            '"Learning to read").'
        )
    return reading


def needs_reading_stage(cfg: DemoConfig, pretrain_reading: dict | None) -> bool:
    """Whether the reading stage runs: it and the check are on, and the pretrained decoder's check read
    below READING_WARN."""
    if cfg.reading_steps <= 0 or cfg.reading_check <= 0 or pretrain_reading is None:
        return False
    return pretrain_reading["colour_binding"] < READING_WARN


def vq_from_folder(vq_from: str) -> Path:
    """The folder `vq_from` names ("shipped": the shipped model's); loading it checks that it holds a
    vision tokenizer (`load_vision_tokenizer` names the folder if not)."""
    folder = SHIPPED_MODEL if vq_from == "shipped" else Path(vq_from)
    if not folder.is_dir():
        raise FileNotFoundError(f"vq_from={vq_from!r}: no such folder ({folder})")
    return folder


def copy_vision_tokenizer(vq_from: str, vq_dir: Path) -> Path:
    """Write the vision tokenizer of `vq_from` (see vq_from_folder) as <vq_dir>/model, alone and in fp32,
    strictly loaded; returns the source folder. The copy keeps the run's folder whole if the source moves."""
    from emu3.convert.vq import load_vision_tokenizer, save_vision_tokenizer

    folder = vq_from_folder(vq_from)
    save_vision_tokenizer(load_vision_tokenizer(folder), vq_dir / "model")
    print(f"vision tokenizer copied from {folder}")
    return folder


def vq_configs(cfg: DemoConfig) -> list:
    """The vision tokenizer's training runs in order, the last one writing <out>/vq: whole images for
    `vq_steps`, then (for a tiling VQ config) each of `vq_tile_rounds` as a fine-tune on tiles, and, if
    `vq_clip_steps` > 0, a last tiled round with `vq_clip_fraction` of each batch motion clips."""
    from emu3.recipes import train_vq

    out = Path(cfg.out)
    overrides = [f"steps={cfg.vq_steps}", f"image_size={cfg.image_size}", f"seed={cfg.seed}", f"device={cfg.device}"]
    base = load(train_vq.VQTrainConfig, cfg.vq_config, overrides)
    base = replace(base, clip_frames=cfg.vq_clip_frames or base.clip_frames,
                   vq=replace(base.vq, tile_videos=cfg.vq_tile_videos))  # fmt: skip
    runs = [replace(base, vq=replace(base.vq, tile_size=0))]
    if base.vq.tile_size:
        tiles = replace(base.optim, lr=cfg.vq_tile_lr, warmup_steps=30)
        runs += [replace(base, steps=steps, optim=tiles) for steps in cfg.vq_tile_rounds]
        if cfg.vq_clip_steps:
            clips = replace(base.optim, lr=cfg.vq_tile_lr / 2, warmup_steps=20)
            runs.append(replace(base, steps=cfg.vq_clip_steps, video_fraction=cfg.vq_clip_fraction, optim=clips))
    for i, run in enumerate(runs):  # each run starts from the one before; the last writes <out>/vq
        name = "vq" if i == len(runs) - 1 else "vq-whole" if i == 0 else f"vq-tiles{i}"
        runs[i] = replace(run, out=str(out / name), init=str(Path(runs[i - 1].out) / "model") if i else base.init)
    return runs


def pretrain_config(cfg: DemoConfig, out: Path, tok_dir: Path, vq_dir: Path, corpus: Path) -> TrainConfig:
    """Next-token pretraining on every kind of the world's records, text 1.0 / vision 0.5; the fine-tunes
    derive from it (`sft_config`), so its device, threads, compile and precision reach them all."""
    return TrainConfig(
        out=str(out / "pretrain"), tokenizer=str(tok_dir), vq=str(vq_dir / "model"), model=cfg.model,
        data=DataConfig(corpus=str(corpus), seq_len=cfg.seq_len, batch_size=cfg.batch_size, seed=cfg.seed,
                        kinds=PRETRAIN_KINDS),
        optim=OptimConfig(lr=cfg.pretrain_lr, min_lr=cfg.pretrain_lr / 10, warmup_steps=50),
        loss=LossWeights(text=1.0, vision=0.5), steps=cfg.pretrain_steps, save_every=250, log_every=50,
        seed=cfg.seed, threads=cfg.threads, compile=cfg.compile, device=cfg.device, bf16=cfg.bf16,
    )  # fmt: skip


def reading_config(pretrain_cfg: TrainConfig, cfg: DemoConfig) -> TrainConfig:
    """The reading stage (DemoConfig.reading_steps): `reading_kinds` (the question conversations, and a third
    as many drawings by default), from the pretrained model, at the pretraining learning rate decaying to a
    tenth of it."""
    out = Path(pretrain_cfg.out).parent
    return replace(pretrain_cfg, out=str(out / "reading"), init=str(out / "pretrain" / "model"),
                   steps=cfg.reading_steps, save_every=100, data=replace(pretrain_cfg.data, kinds=cfg.reading_kinds),
                   optim=OptimConfig(lr=cfg.pretrain_lr, min_lr=cfg.pretrain_lr / 10, warmup_steps=20))  # fmt: skip


def sft_config(pretrain_cfg: TrainConfig, cfg: DemoConfig, init: Path | None = None) -> TrainConfig:
    """Supervised fine-tuning of `init` (default: the pretrained model) on answers (drawn `sft_qa_weight`
    times as often), captions, images and the moved digits' readings, at a third of the pretraining
    learning rate."""
    out = Path(pretrain_cfg.out).parent
    init = init or out / "pretrain" / "model"
    moved = ("i2t:aug",) if cfg.use_digits and cfg.digit_augment else ()
    kinds = (qa_kind(cfg),) * cfg.sft_qa_weight + ("t2i",) * cfg.sft_t2i_weight + ("i2t",) + moved + where_kinds(cfg)
    return replace(pretrain_cfg, out=str(out / "sft"), init=str(init), steps=cfg.sft_steps,
                   optim=OptimConfig(lr=cfg.pretrain_lr / 3, min_lr=cfg.pretrain_lr / 30, warmup_steps=20),
                   data=replace(pretrain_cfg.data, kinds=kinds), save_every=100)  # fmt: skip


def chat_config(sft_cfg: TrainConfig, cfg: DemoConfig) -> TrainConfig:
    """The understanding-only fine-tune: from the `chat_from` stage's model at the SFT learning rate, on
    image -> text examples only, for `chat_steps`: the questions (with `chat_question_first` before and
    after the image, plus the where-set; else as SFT asks them), captions and `chat_digit_weight` times
    the moved digits."""
    out = Path(sft_cfg.out).parent
    moved = ("i2t:aug",) * cfg.chat_digit_weight if cfg.use_digits and cfg.digit_augment else ()
    if chat_asks_first(cfg):
        questions = ("qa_first",) + ("qa_first:where",) * (cfg.sft_where_weight if cfg.where_scenes else 0)
    else:
        questions = (qa_kind(cfg), *where_kinds(cfg))
    start = sft_cfg.init if cfg.chat_from == "pretrain" else str(out / chat_start(cfg) / "model")  # SFT's start
    return replace(sft_cfg, out=str(out / "chat"), init=start, steps=cfg.chat_steps,
                   data=replace(sft_cfg.data, kinds=(*questions, "i2t", *moved)))  # fmt: skip


def chat_round_trip_config(sft_cfg: TrainConfig, cfg: DemoConfig) -> TrainConfig:
    """The understanding model's last fine-tune: from the chat stage's model, `chat_round_trip_steps` at
    1e-4 on the chat stage's kinds and each of them again on round-tripped images ("qa_first" ->
    "qa_first:rt", "i2t:aug" -> "i2t:aug_rt") and, with `chat_jpeg_scenes`, on JPEG copies
    ("qa_first:jpeg"), those `chat_round_trip_weight` times."""
    chat = chat_config(sft_cfg, cfg)
    copies = tuple(round_trip_kind(k) for k in chat.data.kinds)
    if cfg.chat_jpeg_scenes > 0:
        copies += tuple(round_trip_kind(k, "jpeg") for k in chat.data.kinds)
    kinds = chat.data.kinds + copies * cfg.chat_round_trip_weight
    return replace(chat, out=str(Path(chat.out).parent / "chat_rt"), init=str(Path(chat.out) / "model"),
                   steps=cfg.chat_round_trip_steps, optim=OptimConfig(lr=1e-4, min_lr=1e-5, warmup_steps=10),
                   data=replace(chat.data, kinds=kinds), save_every=50)  # fmt: skip


def round_trip_kind(kind: str, copy: str = "rt") -> str:
    """The kind of an example about a copy of an image (`copy`: "rt" round-tripped, "jpeg"): "qa_first" ->
    "qa_first:rt", "i2t:aug" -> "i2t:aug_rt" (a record's tag is what follows the colon)."""
    return f"{kind}_{copy}" if ":" in kind else f"{kind}:{copy}"


def _copy_records(cfg: DemoConfig, n: int, seed: int, copy: str) -> list[dict]:
    """Question scenes, where-scenes, captioned scenes (read only) and one moved copy of each training
    digit, drawn from streams of `seed`, tagged for the kinds of `copy` (round_trip_kind)."""
    from emu3.worlds import data

    size = cfg.image_size
    records = [{**r, "tag": copy} for r in data.shapes_qa(n, seed=seed, image_size=size, per_image=cfg.qa_per_image)]
    if asks_first(cfg) and cfg.where_scenes:
        records += [{**r, "tag": f"where_{copy}"} for r in data.where_questions(n // 2, seed=seed, image_size=size)]
    records += [{**r, "tag": copy, "generation": 0.0, "understanding": 1.0}
                for r in data.shapes_captions(n, seed=seed, image_size=size)]  # fmt: skip
    if cfg.use_digits and cfg.digit_augment:
        records += [{**r, "tag": f"aug_{copy}"} for r in data.digit_readings(1, seed=seed, image_size=size)]
    return records


def jpeg_records(cfg: DemoConfig) -> list[dict]:
    """The JPEG copies of `chat_round_trip_config`: `chat_jpeg_scenes` scenes as `round_trip_records`
    draws them, from streams of seed + 37, each image saved and read back as JPEG at a quality drawn
    from 50-95."""
    from emu3.vision.image_io import jpeg_copy

    records = _copy_records(cfg, cfg.chat_jpeg_scenes, cfg.seed + 37, "jpeg")
    rng = random.Random(cfg.seed + 37)
    return [{**r, "image": jpeg_copy(r["image"], rng.randint(50, 95))} for r in records]


def round_trip_records(cfg: DemoConfig, vq, batch_size: int = 32) -> list[dict]:
    """The records of `chat_round_trip_config`, their images replaced by decode(encode(image)): question
    scenes, where-scenes, captioned scenes (read only) and one moved copy of each training digit, drawn
    from streams of seed + 31 (none of them is in the corpus as it is)."""
    from emu3.vision.image_io import to_pixels, to_uint8

    records = _copy_records(cfg, cfg.chat_round_trip_scenes, cfg.seed + 31, "rt")
    with torch.inference_mode():
        for i in range(0, len(records), batch_size):
            part = records[i : i + batch_size]
            pixels = torch.stack([to_pixels(r["image"], vq.cfg.pixel_multiple) for r in part]).to(vq.device)
            for record, image in zip(part, vq.decode_image(vq.encode_image(pixels)), strict=True):
                record["image"] = to_uint8(image)
    return records


def gen_config(sft_cfg: TrainConfig, cfg: DemoConfig) -> TrainConfig:
    """The generation-only fine-tune: from the DPO model (the SFT model without a DPO stage) at `gen_lr`,
    on text -> image examples only: the world's, and `gen_digit_weight` times the digits to draw; with
    `gen_video_weight`, text -> video examples too."""
    out = Path(sft_cfg.out).parent
    digits = ("t2i:digit",) * cfg.gen_digit_weight if cfg.use_digits else ()
    videos = ("t2v",) * cfg.gen_video_weight
    return replace(sft_cfg, out=str(out / "gen"), init=str(out / tuned_stage(cfg) / "model"), steps=cfg.gen_steps,
                   optim=OptimConfig(lr=cfg.gen_lr, min_lr=cfg.gen_lr / 10, warmup_steps=20),
                   data=replace(sft_cfg.data, kinds=("t2i", *digits, *videos)))  # fmt: skip


def _check_gen_corpus(cfg: DemoConfig, corpus: Path) -> None:
    """The gen stage draws kinds the corpus may lack (it was tokenised with other settings), and it would
    quietly train without them: the digits to draw (a corpus tokenised without `gen_steps`) and, with
    `gen_video_weight`, the clips (one tokenised with videos=0)."""
    kinds = Corpus(corpus).kinds()
    if cfg.use_digits and cfg.gen_digit_weight and "t2i:digit" not in kinds:
        raise SystemExit(
            f"{corpus} was tokenised without the digits the gen stage draws (gen_steps was 0 then): "
            "delete that folder so that train-demo tokenises the world again"
        )
    if cfg.gen_video_weight and "t2v" not in kinds:
        raise SystemExit(
            f"{corpus} holds no clips (kind t2v) for gen_video_weight={cfg.gen_video_weight} to draw: tokenise the "
            "world again with videos > 0 (delete that folder), or set gen_video_weight=0"
        )


def first_and_last_metrics(out: Path, stages) -> dict:
    """The training log's "<stage>_first" / "<stage>_last": each stage's first and last metrics rows, for
    the stages under `out` that have a metrics.jsonl."""
    log = {}
    for stage in stages:
        metrics = out / stage / "metrics.jsonl"
        if metrics.exists():
            rows = [json.loads(line) for line in metrics.read_text().splitlines()]
            log[f"{stage}_first"], log[f"{stage}_last"] = rows[0], rows[-1]
    return log


def tuned_stage(cfg: DemoConfig) -> str:
    """The last stage of the shared post-training: DPO's last round, or SFT when there is no DPO stage."""
    return dpo_stage(cfg.dpo_rounds) if runs_dpo(cfg) else "sft"


def dpo_stage(r: int) -> str:
    """The folder of DPO round `r` (from 1): "dpo", then "dpo_r2", "dpo_r3", ..."""
    return "dpo" + round_suffix(r)


def round_suffix(r: int) -> str:
    """What DPO round `r`'s folders (its model, its pairs) add to round one's names: "", "_r2", ..."""
    return "" if r == 1 else f"_r{r}"


def chat_start(cfg: DemoConfig) -> str:
    """The stage the chat model starts from: `chat_from`, where "dpo" is DPO's last round."""
    return tuned_stage(cfg) if cfg.chat_from == "dpo" else cfg.chat_from


def generation_stage(cfg: DemoConfig) -> str:
    """The stage whose model is exported as the folder's generation model."""
    return "gen" if cfg.gen_steps > 0 else tuned_stage(cfg)


def dpo_config(cfg: DemoConfig, sft_dir: Path, prefs: Path, out: Path):
    """DPO from `sft_dir` (the SFT model, or the previous round's), which is also its reference, on the
    preference corpus `prefs`: `dpo_epochs` passes, 8 pairs a step."""
    from emu3.recipes import dpo

    pairs_per_step = 8
    steps = max(1, math.ceil(cfg.dpo_epochs * (len(Corpus(prefs)) // 2) / pairs_per_step))
    return dpo.DPOConfig(init=str(sft_dir), out=str(out),
                         data=DataConfig(corpus=str(prefs), batch_size=pairs_per_step, seed=cfg.seed), steps=steps,
                         optim=OptimConfig(lr=cfg.dpo_lr, min_lr=cfg.dpo_lr / 10, warmup_steps=10),
                         beta=cfg.dpo_beta, nll_weight=0.2, mask_shared=cfg.dpo_mask_shared,
                         positive=cfg.dpo_positive, guidance=cfg.dpo_guidance, save_every=100,
                         log_every=20, threads=cfg.threads, device=cfg.device, bf16=cfg.bf16)  # fmt: skip


def _world_records(cfg: DemoConfig) -> list[dict]:
    from emu3.worlds import data

    records = list(data.shapes_captions(cfg.captions, seed=cfg.seed, image_size=cfg.image_size))
    records += list(data.shapes_qa(cfg.qa_images, seed=cfg.seed, image_size=cfg.image_size,
                                   per_image=cfg.qa_per_image))  # fmt: skip
    if cfg.use_digits:  # repeated, and always in both directions: only 1,437 real images to learn from
        digits = [{**r, "understanding": 1.0} for r in data.digit_captions("train", image_size=cfg.image_size)]
        records += digits * cfg.digit_repeats
    records += list(data.motion_videos(cfg.videos, seed=cfg.seed, frames=16, image_size=cfg.image_size))
    random.Random(cfg.seed).shuffle(records)
    return records


def fine_tune_records(cfg: DemoConfig) -> list[dict]:
    """Records only the fine-tunes read (tagged, so pretraining leaves them out), in this order: the moved
    digits to read, the where-set (when a stage asks questions first), the digits to draw (gen stage).
    Each set goes after the ones before it, so that turning a later one on leaves the earlier examples
    where they were."""
    from emu3.worlds import data

    records: list[dict] = []
    if cfg.use_digits and cfg.digit_augment:
        records += data.digit_readings(cfg.digit_augment, seed=cfg.seed, image_size=cfg.image_size)
    if asks_first(cfg) and cfg.where_scenes:
        records += data.where_questions(cfg.where_scenes, seed=cfg.seed, image_size=cfg.image_size)
    if cfg.gen_steps > 0 and cfg.use_digits:
        records += data.digit_drawings(image_size=cfg.image_size)
    return records


def _tokenize_world(cfg: DemoConfig, vq_dir: Path, tok_dir: Path, corpus: Path) -> None:
    from emu3.convert.vq import load_vision_tokenizer
    from emu3.data.pretokenize import PretokenizeConfig, pretokenize
    from emu3.tokens.text import train_text_tokenizer

    records = _world_records(cfg)
    vq = load_vision_tokenizer(vq_dir, device=cfg.device)
    texts = [r.get("caption", "") for r in records] + [f"{q} {a}" for r in records for q, a in r.get("qa", [])]
    records += fine_tune_records(cfg)  # after the world's, which keep their indices and shards
    if cfg.chat_round_trip_steps > 0:  # last: they need the tokenizer, and nothing before them moves
        records += round_trip_records(cfg, vq) + (jpeg_records(cfg) if cfg.chat_jpeg_scenes > 0 else [])
    texts += ["You are a helpful assistant. USER: ASSISTANT:"] * 50
    tok = train_text_tokenizer(texts, cfg.text_vocab, vq.cfg.codebook_size)
    tok.save(tok_dir)
    # Eight images per VQ call on a CPU: the same codes as 64 (each image's do not depend on its batch), in
    # half the time (measured: 3.9 ms an image against 8.1 ms; bigger batches outgrow the caches). A GPU
    # takes 64 (benchmarks/video_scaling.py's tokens), where small calls leave it waiting on launches.
    pcfg = PretokenizeConfig(understanding=0.3, null_caption=0.1, shard_size=4000,
                             batch_size=8 if cfg.device == "cpu" else 64,
                             qa_per_example=cfg.qa_per_image, question_first=asks_first(cfg),
                             question_twice=asks_twice(cfg))  # fmt: skip
    stats = pretokenize(records, corpus, vq, tok, pcfg)
    print(f"tokenised {stats['records']} records into {stats['examples']} examples ({stats['skipped']} skipped)")


def runs_dpo(cfg: DemoConfig) -> bool:
    """Whether train-demo has a DPO stage (it needs prompts to sample preference pairs for)."""
    return cfg.dpo_prompts + cfg.dpo_digit_prompts > 0


def chat_asks_first(cfg: DemoConfig) -> bool:
    """Whether the understanding model reads each question before and after its image."""
    return cfg.chat_steps > 0 and cfg.chat_question_first


def asks_first(cfg: DemoConfig) -> bool:
    """Whether the corpus also holds each question before its image (kind "qa_first") and the where-set."""
    return cfg.question_first or chat_asks_first(cfg)


def asks_twice(cfg: DemoConfig) -> bool:
    """Whether those questions are asked again after the image (always when the chat model reads them;
    DemoConfig refuses question_first without question_twice then)."""
    return cfg.question_twice or chat_asks_first(cfg)


def qa_kind(cfg: DemoConfig) -> str:
    """The question examples that fine-tuning reads: each question before its image, or BAAI's layout."""
    return "qa_first" if cfg.question_first else "qa"


def where_kinds(cfg: DemoConfig) -> tuple[str, ...]:
    """The where-set's kind, `sft_where_weight` times, when fine-tuning asks questions first; else none."""
    return ("qa_first:where",) * cfg.sft_where_weight if cfg.question_first and cfg.where_scenes else ()


def _write_pipeline_defaults(model_dir: Path, cfg: DemoConfig, fine_tuned: bool = True, vq_folder: str = "") -> None:
    """`pipeline_defaults` written into `model_dir`."""
    pipeline_defaults(cfg, fine_tuned, vq_folder).write(model_dir)


def pipeline_defaults(cfg: DemoConfig, fine_tuned: bool = True, vq_folder: str = ""):
    """Generation defaults; a model that was not fine-tuned is asked in the layout pretraining used."""
    from emu3.generate.pipeline import PipelineConfig, PromptSampling
    from emu3.worlds import digits

    size = (cfg.image_size, cfg.image_size)
    # Prompts like "the digit 7" are drawn at the digits' own guidance and temperature.
    families = (PromptSampling(digits.CAPTION_PATTERN, **digits.DRAW_SAMPLING),) if cfg.use_digits else ()
    return PipelineConfig(
        positive_suffix="",
        negative_prompt="",
        image_size=size,
        video_frames=4,
        guidance=1.5,  # chosen on held-out prompts (eval seed 7; the table uses seed 0): 3.0 scored far lower
        temperature=0.6,  # 0.6 and below scored alike on held-out prompts (seed 7), all above 1.0
        top_k=8,
        max_answer_tokens=48,
        question_first=cfg.question_first and fine_tuned,
        question_twice=cfg.question_twice and fine_tuned,
        vq_folder=vq_folder,
        prompt_sampling=families,
    )


def _preference_pairs(cfg: DemoConfig, model_dir: Path, out: Path, r: int = 1) -> dict:
    """DPO round `r`'s pairs from `model_dir` (the SFT model, then each round's): `dpo_prompts(cfg, r)`,
    sampled at `dpo_temperature`."""
    prompts, scorers = dpo_prompts(cfg, r)
    return sample_preference_pairs(model_dir, prompts, scorers, out, samples=cfg.dpo_samples,
                                   temperature=cfg.dpo_temperature, seed=round_seed(cfg, r),
                                   device=cfg.device, dtype=sampling_dtype(cfg))  # fmt: skip


def sampling_dtype(cfg: DemoConfig):
    """The decoder's dtype when a stage samples from it (DPO's pairs): the pipeline's own choice ("auto":
    bf16 where the device runs it fast) under `bf16=true`, fp32 under `bf16=false`, as training."""
    return "auto" if cfg.bf16 else torch.float32


def round_seed(cfg: DemoConfig, r: int) -> int:
    """The seed of DPO round `r`'s prompts and samples: `seed`, then 100 more a round."""
    return cfg.seed + 100 * (r - 1)


def sample_preference_pairs(
    model_dir: Path, prompts: list[str], scorers: list, out: Path, *, samples: int = 4, temperature: float = 1.0,
    seed: int = 0, device: str = "cpu", dtype="auto",
) -> dict:  # fmt: skip
    """Sample `samples` images per prompt (the model's guidance and top-k, at `temperature`) and score
    each with its prompt's scorer (shapes: the checker; digits: a second judge, not the evaluation's);
    every two samples of one prompt whose scores differ by at least 0.2 make a (better, worse) pair,
    written as a preference corpus to `out`. `dtype`: the decoder's while sampling (`Pipeline.load`'s)."""
    from emu3.data.shards import Example, write_shard
    from emu3.generate.pipeline import Pipeline
    from emu3.tokens import templates

    # Every prompt at `temperature` and the model's guidance, digits too (not their `prompt_sampling`).
    pipe = Pipeline.load(model_dir, device=device, dtype=dtype)
    pipe = pipe.with_config(temperature=temperature, prompt_sampling=())
    h, w = pipe.latent_size()
    pairs, scores_all = [], []
    for i in range(0, len(prompts), 8):
        batch = prompts[i : i + 8]
        # The sampled codes themselves, not the decoded images encoded again: that round trip changes about
        # half the codes, and DPO must score the sequences the model actually generated.
        codes_all = pipe.text_to_image_codes(batch, num_images=samples, seed=seed + i)
        images = pipe.decode_images(codes_all)
        for j, prompt in enumerate(batch):
            group = range(j * samples, (j + 1) * samples)
            scores = [scorers[i + j](images[k]) for k in group]
            scores_all += scores
            prompt_len = len(templates.t2i_prompt(prompt, h, w, pipe.tok, positive_suffix=""))
            sequences = [templates.caption_then_image(prompt, codes_all[k], pipe.tok) for k in group]
            for better, worse in ranked_pairs(scores):
                for k, kind in ((better, "chosen"), (worse, "rejected")):
                    ids = sequences[k]
                    pairs.append(Example(ids, [-100] * prompt_len + ids[prompt_len:], kind))
    if not pairs:
        raise SystemExit("no preference pairs: every sample scored the same; train longer before DPO")
    write_shard(out, "pairs", pairs)
    return {"pairs": len(pairs) // 2, "mean_sample_score": sum(scores_all) / len(scores_all)}


def dpo_prompts(cfg: DemoConfig, r: int = 1) -> tuple[list[str], list]:
    """DPO round `r`'s prompts and, for each, a function scoring a sampled image: `dpo_prompts` shapes
    scenes (checker scores; other scenes each round), then `dpo_digit_prompts` digit captions (1 if the
    ranking judge reads the digit)."""
    from emu3.worlds import shapes

    rng = random.Random(round_seed(cfg, r) + 7)
    scenes = [shapes.sample_scene(rng) for _ in range(cfg.dpo_prompts)]
    prompts = [shapes.caption(s, rng) for s in scenes]
    scorers = [partial(scene_score, s) for s in scenes]
    if cfg.dpo_digit_prompts:
        from emu3.worlds import digits

        judge = digits.DigitJudge.train(cfg.image_size, kind="logistic")
        labels = [i % 10 for i in range(cfg.dpo_digit_prompts)]
        prompts += [digits.caption(d) for d in labels]
        scorers += [partial(_digit_score, judge, d) for d in labels]
    return prompts, scorers


def scene_score(scene, image: np.ndarray) -> float:
    """DPO's ranking score of an image for its scene: the checker's overall, plus partial credit for
    position, colour and count."""
    from emu3.worlds import checker

    return _score(checker.score_image(image, scene))


def _digit_score(judge, label: int, image: np.ndarray) -> float:
    return float(judge.predict(image[None])[0] == label)


def ranked_pairs(scores: list[float], min_gap: float = 0.2) -> list[tuple[int, int]]:
    """(better, worse) index pairs among one prompt's samples whose scores differ by at least `min_gap`."""
    out = []
    for a, b in itertools.combinations(range(len(scores)), 2):
        sa, sb = scores[a], scores[b]
        if abs(sa - sb) >= min_gap:
            out.append((a, b) if sa > sb else (b, a))
    return out


def _score(s: dict[str, float]) -> float:
    return s["overall"] + 0.5 * s["position"] + 0.25 * s["colour"] + 0.25 * s["count"]


def export_chat(src: Path, model_dir: Path, cfg: DemoConfig) -> Path:
    """The understanding model `src` into `model_dir`/chat: its bf16 decoder and tokenizer, no vision
    tokenizer (its pipeline defaults point at the parent's, which it was trained with)."""
    dst = Path(model_dir) / CHAT_FOLDER
    asked = replace(cfg, question_first=True, question_twice=asks_twice(cfg)) if chat_asks_first(cfg) else cfg
    _save_bf16(src, dst, asked, with_vq=False)
    return dst


def _export(src: Path, dst: Path, cfg: DemoConfig) -> None:
    """Copy the final model with bf16 decoder weights and the generation defaults. The vision tokenizer's
    encoder stays fp32 (its codes must not move: rounding its weights to bf16 changed 9% of the shipped
    tokenizer's codes on 200 scenes) and its pixel decoder is stored in bf16 (decoded pixels moved by
    0.0007 on average, 0.021 at most, on a -1..1 scale), which leaves room for an understanding model in the
    30 MB budget."""
    _save_bf16(src, dst, cfg, with_vq=True)


def _save_bf16(src: Path, dst: Path, cfg: DemoConfig, *, with_vq: bool) -> None:
    """The decoder of `src` in bf16, its tokenizer and generation defaults into `dst`; `with_vq`: also
    its vision tokenizer (pixel decoder in bf16) and the vocabulary map, else the defaults point at the
    parent folder's vision tokenizer."""
    from emu3.convert.decoder import load_decoder, save_decoder, vocabulary_map
    from emu3.convert.vq import load_vision_tokenizer, vq_config_to_hf, vq_state_dict_to_hf
    from emu3.tokens.text import load_text_tokenizer

    tok = load_text_tokenizer(src)
    s = tok.special
    extra = {}
    if with_vq:
        vq = load_vision_tokenizer(src)
        names = {i: tok.special_name(i) for i in range(s.pad, s.visual_start)}
        extra = {"vq_state": {k: v.to(torch.bfloat16) if k.startswith("decoder.") and v.is_floating_point() else v
                              for k, v in vq_state_dict_to_hf(vq).items()},
                 "vq_config": vq_config_to_hf(vq.cfg),
                 "vocabulary_map": vocabulary_map(names, s.visual_start, s.codebook_size)}  # fmt: skip
    save_decoder(load_decoder(src, dtype=torch.float32), dst, bos_id=s.bos, eos_id=s.eos, pad_id=s.pad,
                 dtype=torch.bfloat16, **extra)  # fmt: skip
    tok.save(dst)
    _write_pipeline_defaults(dst, cfg, vq_folder="" if with_vq else "..")
