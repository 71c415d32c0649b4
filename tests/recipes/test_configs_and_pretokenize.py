"""Every shipped YAML config loads into its dataclass; `emu3 pretokenize` skips bad records."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emu3.cli import main
from emu3.configuration import load
from emu3.data.shards import Corpus
from emu3.recipes.common import TrainConfig
from emu3.recipes.dpo import DPOConfig
from emu3.recipes.train_demo import DemoConfig
from emu3.recipes.train_vq import VQTrainConfig
from emu3.robot.train import RobotTrainConfig
from emu3.worlds import shapes

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "pretrain": TrainConfig,
    "sft": TrainConfig,
    "dpo": DPOConfig,
    "train_vq": VQTrainConfig,
    "robot": RobotTrainConfig,
    "train_demo": DemoConfig,
}
REQUIRED = {"pretrain": ["data.corpus=x", "tokenizer=y"], "sft": ["data.corpus=x", "init=y"],
            "dpo": ["data.corpus=x", "init=y"], "train_vq": [], "robot": [], "train_demo": []}  # fmt: skip


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads(path):
    kind = path.parent.name
    assert kind in CONFIGS, f"configs/{kind} has no dataclass in this test"
    load(CONFIGS[kind], path, REQUIRED[kind])


def test_pretokenize_command_counts_and_skips_bad_records(world, tmp_path):
    import random

    rng = random.Random(0)
    lines = []
    for i in range(4):
        scene = shapes.sample_scene(rng)
        Image.fromarray(shapes.render(scene, 32)).save(tmp_path / f"{i}.png")
        lines.append({"image": f"{i}.png", "caption": shapes.caption(scene, rng)})
    (tmp_path / "bad.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "tiny.png")
    lines += [{"image": "bad.png", "caption": "x"}, {"image": "tiny.png", "caption": "x"},
              {"image": "0.png", "caption": "  "}, {"what": 1}, {"text": "a plain sentence"}]  # fmt: skip
    manifest = tmp_path / "data.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    model = tmp_path / "model"
    model.mkdir()
    for f in (world / "tok").iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    assert main(["pretokenize", str(manifest), "-o", str(tmp_path / "out"), "--model", str(model),
                 "--vq", str(world / "vq")]) == 0  # fmt: skip
    corpus = Corpus(tmp_path / "out")
    assert corpus.kinds().get("t2i", 0) == 4 and corpus.kinds().get("text") == 1
    # Running again resumes: nothing is redone.
    assert main(["pretokenize", str(manifest), "-o", str(tmp_path / "out"), "--model", str(model),
                 "--vq", str(world / "vq")]) == 0  # fmt: skip
    assert len(Corpus(tmp_path / "out")) == len(corpus)


def test_a_records_own_understanding_overrides_the_corpus_fraction(world, tmp_path):
    from emu3.convert.vq import load_vision_tokenizer
    from emu3.data.pretokenize import PretokenizeConfig, pretokenize
    from emu3.tokens.text import load_text_tokenizer
    from emu3.worlds import data

    records = list(data.shapes_captions(12, seed=1, image_size=32))
    records = [{**r, "understanding": 1.0} for r in records[:6]] + [{**r, "understanding": 0.0} for r in records[6:]]
    vq, tok = load_vision_tokenizer(world / "vq"), load_text_tokenizer(world / "tok")
    cfg = PretokenizeConfig(understanding=0.5, null_caption=0.0)
    pretokenize(records, tmp_path / "out", vq, tok, cfg, progress=False)
    kinds = Corpus(tmp_path / "out").kinds()
    assert kinds["t2i"] == 12 and kinds["i2t"] == 6  # every record with 1.0, none with 0.0


def test_a_records_generation_and_tag_choose_its_directions_and_kinds(world, tmp_path):
    from emu3.convert.vq import load_vision_tokenizer
    from emu3.data.pretokenize import PretokenizeConfig, pretokenize
    from emu3.tokens.text import load_text_tokenizer
    from emu3.worlds import data

    records = list(data.shapes_captions(8, seed=3, image_size=32))
    read_only = [{**r, "generation": 0.0, "understanding": 1.0, "tag": "aug"} for r in records[:5]]
    records = read_only + [{**r, "understanding": 1.0} for r in records[5:]]
    vq, tok = load_vision_tokenizer(world / "vq"), load_text_tokenizer(world / "tok")
    pretokenize(records, tmp_path / "out", vq, tok, PretokenizeConfig(null_caption=0.0), progress=False)
    assert Corpus(tmp_path / "out").kinds() == {"i2t:aug": 5, "t2i": 3, "i2t": 3}
    # A stage that names the untagged kinds never sees the tagged examples; one that names the tag does.
    assert Corpus(tmp_path / "out", ("t2i", "i2t")).kinds() == {"t2i": 3, "i2t": 3}
    from emu3.tokens import templates
    from emu3.vision.image_io import to_pixels

    tagged = list(Corpus(tmp_path / "out", ("i2t:aug",)))  # the usual layout: the image, then its caption
    for example, record in zip(tagged, read_only, strict=True):
        codes = vq.encode_image(to_pixels(record["image"], vq.cfg.pixel_multiple)[None])[0]
        assert example.tokens == templates.image_then_caption(codes, record["caption"], tok)


def test_questions_about_one_image_can_share_one_conversation(world, tmp_path):
    from emu3.convert.vq import load_vision_tokenizer
    from emu3.data.pretokenize import PretokenizeConfig, pretokenize
    from emu3.tokens.text import load_text_tokenizer
    from emu3.worlds import data

    records = list(data.shapes_qa(4, seed=2, image_size=32, per_image=3))
    vq, tok = load_vision_tokenizer(world / "vq"), load_text_tokenizer(world / "tok")
    pretokenize(records, tmp_path / "one", vq, tok, PretokenizeConfig(), progress=False)
    pretokenize(records, tmp_path / "conv", vq, tok, PretokenizeConfig(qa_per_example=3), progress=False)
    one, conv = Corpus(tmp_path / "one"), Corpus(tmp_path / "conv")
    n_questions = sum(len(r["qa"]) for r in records)
    assert one.kinds()["qa"] == n_questions and conv.kinds()["qa"] == len(records)

    def image_tokens(ids):
        start = tok.special.visual_start
        return sum(start <= t < start + tok.special.codebook_size for t in ids)

    def answers(corpus):  # the trained tokens, decoded per example
        out = []
        for i in range(len(corpus)):
            ids, labels = corpus[i].tokens, corpus[i].labels
            out.append([t for t, lab in zip(ids, labels, strict=True) if lab != -100])
        return out

    # Each conversation holds its image once, and trains exactly the answers the separate examples train.
    for i in range(len(conv)):
        assert image_tokens(conv[i].tokens) == 8 * 8
    assert sorted(sum(answers(conv), [])) == sorted(sum(answers(one), []))
    with pytest.raises(ValueError, match="qa_per_example"):
        PretokenizeConfig(qa_per_example=0)


def test_question_first_adds_each_question_alone_before_its_image_and_leaves_the_rest(world, tmp_path):
    from emu3.convert.vq import load_vision_tokenizer
    from emu3.data.pretokenize import PretokenizeConfig, pretokenize
    from emu3.tokens import templates
    from emu3.tokens.format import Image as Codes
    from emu3.tokens.text import load_text_tokenizer
    from emu3.vision.image_io import to_pixels
    from emu3.worlds import data

    records = list(data.shapes_qa(3, seed=4, image_size=32, per_image=2))
    vq, tok = load_vision_tokenizer(world / "vq"), load_text_tokenizer(world / "tok")
    pretokenize(records, tmp_path / "base", vq, tok, PretokenizeConfig(qa_per_example=2), progress=False)
    pretokenize(records, tmp_path / "both", vq, tok, PretokenizeConfig(qa_per_example=2, question_first=True),
                progress=False)  # fmt: skip
    assert Corpus(tmp_path / "both").kinds() == {"qa": 3, "qa_first": 6}
    # The usual conversations are unchanged, in order: a stage that leaves "qa_first" out sees the same data.
    assert [(e.tokens, e.labels) for e in Corpus(tmp_path / "base")] == [
        (e.tokens, e.labels) for e in Corpus(tmp_path / "both", ("qa",))
    ]
    first = list(Corpus(tmp_path / "both", ("qa_first",)))
    pairs = [(r, q, a) for r in records for q, a in r["qa"]]
    for example, (record, question, answer) in zip(first, pairs, strict=True):
        codes = vq.encode_image(to_pixels(record["image"], vq.cfg.pixel_multiple)[None])[0]
        turns = [templates.Message("user", (question, Codes(codes))), templates.Message("assistant", (answer,))]
        assert (example.tokens, example.labels) == templates.chat_example(turns, tok)
        boi = example.tokens.index(tok.special.boi)
        assert question.split()[0] in tok.decode(example.tokens[:boi])  # the question is read first
        trained = [t for t, lab in zip(example.tokens, example.labels, strict=True) if lab != -100]
        assert tok.decode(trained[:-1]).strip() == answer and trained[-1] == tok.special.eos
    # question_twice asks it again after the image, and changes nothing else.
    pretokenize(records, tmp_path / "twice", vq, tok, PretokenizeConfig(qa_per_example=2, question_first=True,
                question_twice=True), progress=False)  # fmt: skip
    twice = list(Corpus(tmp_path / "twice", ("qa_first",)))
    for example, (record, question, answer) in zip(twice, pairs, strict=True):
        codes = vq.encode_image(to_pixels(record["image"], vq.cfg.pixel_multiple)[None])[0]
        asked = (question, Codes(codes), question)
        turns = [templates.Message("user", asked), templates.Message("assistant", (answer,))]
        assert (example.tokens, example.labels) == templates.chat_example(turns, tok)
    assert [e.tokens for e in Corpus(tmp_path / "twice", ("qa",))] == [e.tokens for e in Corpus(tmp_path / "base")]
