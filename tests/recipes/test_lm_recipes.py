"""Pretraining, SFT and DPO recipes on a tiny world corpus: they learn, checkpoint, resume, export."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from emu3.configuration import load
from emu3.data.shards import Corpus, Example, write_shard
from emu3.generate.pipeline import Pipeline
from emu3.recipes import dpo, pretrain, sft
from emu3.recipes.common import TrainConfig


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _cfg(world, out, **over):
    base = ["tokenizer=" + str(world / "tok"), "data.corpus=" + str(world / "corpus"), f"out={out}",
            "data.seq_len=192", "log_every=1000"]  # fmt: skip
    return load(TrainConfig, "configs/pretrain/tiny.yaml", base + [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def pretrained(world, tmp_path_factory):
    run = tmp_path_factory.mktemp("pt")
    pretrain.main(_cfg(world, run, steps=40, vq=world / "vq", save_every=20))
    return run


def test_pretraining_learns(pretrained):
    losses = [m["loss"] for m in _metrics(pretrained)]
    assert len(losses) == 40 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:3]) / 3
    rows = _metrics(pretrained)
    assert {"text_loss", "vision_loss", "tokens_per_s", "lr"} <= set(rows[-1])


def test_resume_is_exact(world, tmp_path):
    straight, paused = tmp_path / "a", tmp_path / "b"
    pretrain.main(_cfg(world, straight, steps=6, save_every=3, resume="false", bf16="false"))
    pretrain.main(_cfg(world, paused, steps=3, save_every=3, bf16="false"))
    pretrain.main(_cfg(world, paused, steps=6, save_every=3, bf16="false"))  # resumes at step 3
    a = load_file(straight / "step_000006" / "model.safetensors")
    b = load_file(paused / "step_000006" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [m["loss"] for m in _metrics(straight)][3:] == [m["loss"] for m in _metrics(paused)][3:]


def test_exported_model_is_a_pipeline_folder(pretrained):
    pipe = Pipeline.load(pretrained / "model", dtype=torch.float32)
    pipe = pipe.with_config(positive_suffix="", negative_prompt="", image_size=(32, 32))
    assert pipe.text_to_image("a small red circle in the top left", seed=0)[0].shape == (32, 32, 3)


def test_sft_trains_answers_only(world, pretrained, tmp_path):
    cfg = _cfg(world, tmp_path, steps=6, init=pretrained / "model", **{"data.kinds": "[qa]"})
    folder = sft.main(cfg)
    assert (folder / "config.json").is_file() and len(_metrics(tmp_path)) == 6
    with pytest.raises(SystemExit, match="needs init"):
        sft.main(_cfg(world, tmp_path / "x"))


def test_dpo_widens_the_margin(world, pretrained, tmp_path):
    corpus = Corpus(world / "corpus", ("t2i",))
    pairs = []
    for i in range(0, 24, 2):  # a caption with its own image vs with another caption's image
        a, b = corpus[i], corpus[i + 1]
        pairs += [Example(a.tokens, a.labels, "chosen"), Example(b.tokens, b.labels, "rejected")]
    write_shard(tmp_path / "prefs", "p", pairs)
    cfg = load(dpo.DPOConfig, "configs/dpo/tiny.yaml",
               [f"init={pretrained / 'model'}", f"data.corpus={tmp_path / 'prefs'}", f"out={tmp_path / 'run'}",
                "steps=12", "optim.lr=0.002"])  # fmt: skip
    dpo.main(cfg)
    rows = _metrics(tmp_path / "run")
    assert math.isclose(rows[0]["dpo_loss"], math.log(2), abs_tol=0.05)  # policy == reference at the start
    assert rows[-1]["dpo_loss"] < 0.6 and rows[-1]["margin"] > rows[0]["margin"]


def test_bad_configs_are_clear(world, tmp_path):
    from emu3.configuration import ConfigError

    with pytest.raises(ConfigError, match="data.corpus is required"):
        load(TrainConfig, None, ["tokenizer=x"])
    with pytest.raises(ConfigError, match="unknown config key"):
        load(TrainConfig, "configs/pretrain/tiny.yaml", ["data.corpus=x", "tokenizer=y", "optim.lrr=1"])


def test_dpo_with_shared_tokens_masked_scores_only_the_differing_token(world, pretrained, tmp_path):
    """One pair that differs in one image token: with `mask_shared`, the first step's NLL term is that
    token's negative log-probability under the starting model, computed here by hand."""
    import torch

    from emu3.convert.decoder import load_decoder

    chosen = Corpus(world / "corpus", ("t2i",))[0]
    k = len(chosen.tokens) - 6  # an image token near the end of the grid
    rejected_tokens = list(chosen.tokens)
    rejected_tokens[k] += 1 if chosen.tokens[k + 1] != chosen.tokens[k] + 1 else -1  # another visual code
    labels = [-100 if y == -100 else t for y, t in zip(chosen.labels, rejected_tokens, strict=True)]
    rejected = Example(rejected_tokens, labels)
    write_shard(tmp_path / "prefs", "p", [Example(chosen.tokens, chosen.labels, "chosen"),
                                          Example(rejected.tokens, rejected.labels, "rejected")])  # fmt: skip
    cfg = load(dpo.DPOConfig, "configs/dpo/tiny.yaml",
               [f"init={pretrained / 'model'}", f"data.corpus={tmp_path / 'prefs'}", f"out={tmp_path / 'run'}",
                "steps=1", "data.batch_size=1", "mask_shared=true", "bf16=false"])  # fmt: skip
    dpo.main(cfg)
    model = load_decoder(pretrained / "model", dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([chosen.tokens]))[0, k - 1].float()
    by_hand = -torch.log_softmax(logits, -1)[chosen.tokens[k]].item()
    assert math.isclose(_metrics(tmp_path / "run")[0]["nll"], by_hand, rel_tol=1e-3)


def test_guided_dpo_scores_the_sampler_distribution(world, pretrained, tmp_path):
    """With `guidance`, the first step's DPO loss is ln 2 and its NLL is the conditional one (as
    without guidance), while the margin is taken on guided log-probs: after a few steps the guided
    margin has grown, and the unconditional twins were built from the model's negative prompt."""
    from emu3.data.batches import preference_pairs, unconditional_twin
    from emu3.tokens.text import load_text_tokenizer

    tok = load_text_tokenizer(pretrained / "model")
    corpus = Corpus(world / "corpus", ("t2i",))

    def member(ex, kind):  # as train-demo stores a sample: loss on the image only (after IMG)
        first = ex.tokens.index(tok.special.img) + 1
        return Example(ex.tokens, [-100] * first + ex.tokens[first:], kind)

    pairs = []
    for i in range(0, 16, 2):
        pairs += [member(corpus[i], "chosen"), member(corpus[i + 1], "rejected")]
    write_shard(tmp_path / "prefs", "p", pairs)
    common = [f"init={pretrained / 'model'}", f"data.corpus={tmp_path / 'prefs'}", "bf16=false", "seed=3"]
    plain = load(
        dpo.DPOConfig, "configs/dpo/tiny.yaml", common + [f"out={tmp_path / 'plain'}", "steps=1", "data.batch_size=8"]
    )
    dpo.main(plain)
    cfg = load(dpo.DPOConfig, "configs/dpo/tiny.yaml",
               common + [f"out={tmp_path / 'guided'}", "steps=8", "optim.lr=0.001", "data.batch_size=8",
                       "guidance=2.0"])  # fmt: skip
    dpo.main(cfg)
    rows, first_plain = _metrics(tmp_path / "guided"), _metrics(tmp_path / "plain")[0]
    assert math.isclose(rows[0]["dpo_loss"], math.log(2), abs_tol=1e-4)
    assert math.isclose(rows[0]["nll"], first_plain["nll"], rel_tol=1e-4)  # NLL stays conditional
    assert rows[-1]["margin"] > rows[0]["margin"] and rows[-1]["dpo_loss"] < rows[0]["dpo_loss"]
    chosen, _ = preference_pairs(list(Corpus(tmp_path / "prefs")))[0]
    twin = unconditional_twin(chosen, [tok.special.bos], tok.special.boi)
    first = next(i for i, y in enumerate(chosen.labels) if y != -100)
    assert twin.tokens[0] == tok.special.bos and twin.tokens[1] == tok.special.boi
    assert twin.tokens[-(len(chosen.tokens) - first) :] == chosen.tokens[first:]
    assert [y for y in twin.labels if y != -100] == [y for y in chosen.labels if y != -100]
    with pytest.raises(ValueError, match="guidance must be"):
        load(dpo.DPOConfig, "configs/dpo/tiny.yaml", common + ["guidance=-1"])
