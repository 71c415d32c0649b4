"""Token shards and batches: packing with document boundaries, padding, deterministic resumable order."""

import pytest
import torch

from emu3.data.batches import ExampleStream, pack, pad, preference_pairs
from emu3.data.shards import Corpus, Example, write_shard


def _ex(n, start=10, kind="t2i"):
    ids = list(range(start, start + n))
    return Example(ids, ids, kind)


def test_shards_round_trip_with_masks_and_kinds(tmp_path):
    write_shard(tmp_path, "a", [_ex(3), Example([1, 2, 3], [-100, 2, 3], "qa")])
    write_shard(tmp_path, "b", [_ex(2, kind="text")])
    corpus = Corpus(tmp_path)
    assert len(corpus) == 3 and corpus.kinds() == {"t2i": 1, "qa": 1, "text": 1}
    assert corpus[1] == Example([1, 2, 3], [-100, 2, 3], "qa")
    assert len(Corpus(tmp_path, ("qa",))) == 1
    weighted = Corpus(tmp_path, ("qa", "t2i", "qa"))  # a kind named twice is drawn twice as often
    assert weighted.kinds() == {"t2i": 1, "qa": 2} and [ex.kind for ex in weighted] == ["t2i", "qa", "qa"]
    with pytest.raises(FileNotFoundError, match="pretokenize"):
        Corpus(tmp_path / "nothing")


def test_packing_keeps_examples_whole_and_restarts_positions():
    stream = ExampleStream([_ex(4), _ex(3, 50), _ex(9, 70), _ex(2, 90)], seed=0)
    batch, skipped = pack(stream, rows=3, seq_len=8, pad_id=0)
    assert (batch.labels[batch.input_pos < 0] == -100).all() and (batch.input_pos < 0).any()
    assert skipped >= 1  # the 9-token example never fits in 8
    for row_pos, row_tok in zip(batch.input_pos, batch.tokens, strict=True):
        starts = (row_pos == 0).nonzero().flatten().tolist()
        for a, b in zip(starts, starts[1:] + [int((row_pos >= 0).sum())], strict=True):
            seg = row_tok[a:b].tolist()
            assert seg == list(range(seg[0], seg[0] + len(seg)))  # one whole example


def test_stream_order_is_seeded_and_resumable():
    examples = [_ex(2, 10 * i) for i in range(7)]
    a = ExampleStream(examples, seed=3)
    first = [a.next().tokens[0] for _ in range(10)]
    b = ExampleStream(examples, seed=3, position=4)
    assert [b.next().tokens[0] for _ in range(6)] == first[4:]
    assert sorted(first[:7]) == [10 * i for i in range(7)]  # an epoch visits every example once


def test_pack_then_resume_gives_the_same_next_batch():
    examples = [_ex(1 + i % 5, 10 * i) for i in range(30)]
    s = ExampleStream(examples, seed=1)
    pack(s, 2, 8, 0)
    second, _ = pack(s, 2, 8, 0)
    t = ExampleStream(examples, seed=1)
    pack(t, 2, 8, 0)
    resumed = ExampleStream(examples, seed=1, position=t.position)
    assert torch.equal(pack(resumed, 2, 8, 0)[0].tokens, second.tokens)


def test_pad_and_preference_pairs():
    batch = pad([_ex(3), _ex(5)], pad_id=0)
    assert batch.tokens.shape == (2, 5) and batch.input_pos[0].tolist() == [0, 1, 2, -1, -1]
    pairs = preference_pairs([_ex(2, kind="chosen"), _ex(2, kind="rejected")])
    assert len(pairs) == 1
    with pytest.raises(ValueError, match="expected \\(chosen, rejected\\)"):
        preference_pairs([_ex(2, kind="rejected"), _ex(2, kind="chosen")])


def test_mask_shared_tokens_keeps_loss_only_where_the_pair_differs():
    from emu3.data.batches import mask_shared_tokens

    chosen = Example([1, 2, 3, 4, 5], [-100, 2, 3, 4, 5], "chosen")
    rejected = Example([1, 2, 9, 4, 8], [-100, 2, 9, 4, 8], "rejected")
    c, r = mask_shared_tokens(chosen, rejected)
    assert c.labels == [-100, -100, 3, -100, 5] and r.labels == [-100, -100, 9, -100, 8]
    assert (c.tokens, c.kind, r.tokens, r.kind) == (chosen.tokens, "chosen", rejected.tokens, "rejected")
    # unequal lengths: positions after the first difference do not correspond; only the prefix is masked
    longer = Example([1, 2, 7, 4, 5, 6], [-100, 2, 7, 4, 5, 6], "rejected")
    c, r = mask_shared_tokens(chosen, longer)
    assert c.labels == [-100, -100, 3, 4, 5] and r.labels == [-100, -100, 7, 4, 5, 6]
