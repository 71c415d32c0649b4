"""train-demo's round-trip stage end to end: after the chat stage it trains on the chat kinds and their
round-tripped twins, and its model is the one exported as chat/."""

import json

import pytest
import torch

from emu3.recipes.train_demo import DemoConfig, chat_config, chat_round_trip_config, round_trip_records, sft_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A train-demo folder whose stages up to DPO are done (a tiny random model as the DPO model), with a
    corpus of question, where and caption scenes, and their round-tripped copies."""
    from emu3.convert.vq import save_vision_tokenizer
    from emu3.data.pretokenize import PretokenizeConfig, pretokenize
    from emu3.worlds import data
    from tests.helpers.tiny_pipeline import tiny_pipeline

    out = tmp_path_factory.mktemp("demo")
    pipe = tiny_pipeline(seed=0)
    pipe.save(out / "dpo" / "model")  # the generation model, exported with its vision tokenizer
    save_vision_tokenizer(pipe.vq, out / "vq" / "model")
    pipe.tok.save(out / "tokenizer")
    for done in ("pretrain/model/config.json", "sft/model/config.json", "preferences/meta.json"):
        (out / done).parent.mkdir(parents=True, exist_ok=True)
        (out / done).write_text("{}")
    cfg = _cfg(out)
    records = list(data.shapes_qa(3, image_size=32, per_image=2))
    records += list(data.where_questions(2, image_size=32))
    records += [{**r, "understanding": 1.0} for r in data.shapes_captions(3, image_size=32)]
    records += round_trip_records(cfg, pipe.vq)
    pcfg = PretokenizeConfig(null_caption=0.0, shard_size=100, question_first=True, question_twice=True)
    pretokenize(records, out / "tokens", pipe.vq, pipe.tok, pcfg, progress=False)
    return out


def _cfg(out, **kw):
    return DemoConfig(out=str(out), image_size=32, seq_len=160, batch_size=2, digit_augment=0, where_scenes=2,
                      qa_per_image=2, chat_steps=2, chat_round_trip_steps=2, chat_round_trip_scenes=2,
                      **kw)  # fmt: skip


def test_the_round_trip_stage_follows_the_chat_stage_and_is_exported_as_chat(run, tmp_path):
    from emu3.convert.decoder import load_decoder
    from emu3.data.shards import Corpus
    from emu3.recipes import train_demo
    from emu3.recipes.common import TrainConfig

    cfg = _cfg(run, export=str(tmp_path / "model"))
    rt_cfg = chat_round_trip_config(
        sft_config(TrainConfig(tokenizer=str(run / "tokenizer"), data=_data(run)), cfg), cfg
    )
    kinds = Corpus(run / "tokens", rt_cfg.data.kinds).kinds()
    assert {"qa_first:rt", "qa_first:where_rt", "i2t:rt"} <= set(kinds) and "qa_first" in kinds
    assert (
        chat_config(sft_config(TrainConfig(tokenizer=str(run / "tokenizer"), data=_data(run)), cfg), cfg).data.kinds
        == rt_cfg.data.kinds[:5]
    )
    final = train_demo.main(cfg)
    shipped = load_decoder(final / "chat", dtype=torch.float32).state_dict()
    rt = load_decoder(run / "chat_rt" / "model", dtype=torch.float32).state_dict()
    chat = load_decoder(run / "chat" / "model", dtype=torch.float32).state_dict()
    assert all(torch.equal(v, rt[k].to(torch.bfloat16).float()) for k, v in shipped.items())  # stored in bf16
    assert any(not torch.equal(v, chat[k]) for k, v in rt.items())  # trained further, from the chat model
    log = json.loads((final / "training_log.json").read_text())
    assert log["chat_rt_last"]["step"] == 2 and "chat_rt" in log["seconds"]


def _data(out):
    from emu3.recipes.common import DataConfig

    return DataConfig(corpus=str(out / "tokens"), seq_len=160)
