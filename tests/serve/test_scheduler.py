"""Continuous batching on a tiny random decoder: a request's tokens do not depend on its neighbours."""

import threading

import pytest
import torch

from emu3.generate.constraints import image_plan, text_plan
from emu3.generate.generator import Generator, VocabLayout
from emu3.generate.row_cache import RowCache
from emu3.generate.sampling import SamplingConfig
from emu3.generate.scheduler import Cancelled, QueueFull, Request, Scheduler
from emu3.model.config import tiny
from emu3.model.init import build_decoder

PAD, EOS, EOL, EOF, EOI = 0, 2, 4, 6, 7
VOCAB = VocabLayout(visual_start=300, codebook_size=200, pad_id=PAD, eos_id=EOS)
GREEDY = SamplingConfig(temperature=0)
SAMPLED = SamplingConfig(temperature=1.0, top_k=40)


@pytest.fixture(scope="module")
def model():
    return build_decoder(tiny(vocab_size=512), seed=0).eval()


def _prompt(n, seed):
    return torch.randint(8, 300, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _plan(h, w):
    return image_plan(h, w, EOL, EOF, EOI, EOS)


def _alone(model, req: Request) -> list[int]:
    """What the plain Generator makes of this request by itself."""
    negatives = None if req.negative_prompt is None else [req.negative_prompt]
    out = Generator(model, VOCAB).generate(
        [req.prompt], [req.plan], negative_prompts=negatives, guidance=req.guidance, schedule=req.schedule,
        sampling=req.sampling, seed=req.seed,
    )  # fmt: skip
    return out.tokens[0, : int(out.lengths[0])].tolist()


def test_row_cache_decode_equals_full_forward(model):
    """Rows filled at different times, with other rows idle, give the logits of a plain forward."""
    cache = RowCache.for_model(model, rows=3, capacity=32)
    seqs = {0: _prompt(5, 1), 2: _prompt(9, 2)}
    with torch.inference_mode():
        for row, seq in seqs.items():
            small = model.new_cache(1, len(seq))
            model.hidden(torch.tensor([seq]), torch.arange(len(seq))[None], small)
            cache.load_rows([row], small)
        nxt = {0: 11, 2: 12}
        tokens = torch.tensor([[nxt[0]], [PAD], [nxt[2]]])
        pos = torch.tensor([[5], [-1], [9]])
        got = model(tokens, pos, cache.window(3, 10))[:, -1]
        for row, seq in seqs.items():
            ref = model(torch.tensor([seq + [nxt[row]]]))[0, -1]
            torch.testing.assert_close(got[row], ref, atol=1e-5, rtol=1e-5)


def test_requests_admitted_mid_flight_match_the_generator_alone(model):
    requests = [
        Request(_prompt(9, 1), _plan(3, 4), negative_prompt=_prompt(4, 2), guidance=3.0, sampling=GREEDY),
        Request(_prompt(5, 3), text_plan(12), sampling=GREEDY),
        Request(_prompt(6, 4), _plan(2, 5), negative_prompt=_prompt(11, 5), guidance=2.0, sampling=GREEDY),
        Request(
            _prompt(7, 6),
            _plan(2, 3),
            negative_prompt=_prompt(3, 7),
            guidance=4.0,
            schedule="linear",
            seed=5,
            sampling=SAMPLED,
        ),
    ]
    sched = Scheduler(model, VOCAB, max_rows=6, max_len=96)
    tickets = [sched.submit(requests[0]), sched.submit(requests[1])]
    for _ in range(4):
        sched.step()
    tickets.append(sched.submit(requests[2]))  # joins while the first two are mid-way
    sched.step()
    tickets.append(sched.submit(requests[3]))  # waits for rows: 6 rows hold 2 + 1 + 2
    sched.run_until_idle()
    for ticket, req in zip(tickets, requests, strict=True):
        assert ticket.status == "finished"
        assert ticket.wait() == _alone(model, req)
    assert sched.stats().rows_in_use == 0


def test_cancel_frees_rows_and_the_next_request_runs(model):
    sched = Scheduler(model, VOCAB, max_rows=2, max_len=128)
    long = sched.submit(Request(_prompt(4, 1), _plan(8, 8), negative_prompt=_prompt(3, 2), sampling=GREEDY))
    queued = sched.submit(Request(_prompt(4, 3), text_plan(5), sampling=GREEDY))
    for _ in range(3):
        sched.step()
    assert long.status == "running" and queued.status == "waiting"
    assert sched.stats().rows_in_use == 2
    assert long.cancel()
    sched.step()  # the cancelled rows are freed and the waiting request takes one
    assert long.status == "cancelled" and queued.status == "running"
    with pytest.raises(Cancelled):
        long.wait(0)
    sched.run_until_idle()
    assert queued.wait(0) == _alone(model, queued.request)
    assert not long.cancel()  # already ended
    assert sched.stats().rows_in_use == 0


def test_queue_is_bounded_and_cancelling_a_waiting_request_frees_its_place(model):
    sched = Scheduler(model, VOCAB, max_rows=1, max_queue=2, max_len=64)
    first = sched.submit(Request(_prompt(3, 1), text_plan(4)))
    sched.submit(Request(_prompt(3, 2), text_plan(4)))
    with pytest.raises(QueueFull):
        sched.submit(Request(_prompt(3, 3), text_plan(4)))
    assert first.cancel() and first.status == "cancelled"
    sched.submit(Request(_prompt(3, 3), text_plan(4)))
    assert sched.stats().waiting == 2


def test_progress_callback_and_done_callback(model):
    sched = Scheduler(model, VOCAB, max_rows=2, max_len=64)
    seen, ended = [], threading.Event()
    plan = _plan(2, 2)
    ticket = sched.submit(Request(_prompt(3, 1), plan, on_progress=lambda d, t, tok: seen.append((d, t, tok))))
    ticket.add_done_callback(lambda _t: ended.set())
    sched.run_until_idle()
    assert [(d, t) for d, t, _ in seen] == [(i + 1, plan.numel()) for i in range(plan.numel())]
    assert [tok for *_, tok in seen] == ticket.tokens and ended.is_set()
    assert ticket.finish_reason == "stop"


def test_a_raising_callback_does_not_stop_the_scheduler(model):
    sched = Scheduler(model, VOCAB, max_rows=2, max_len=64)

    def boom(*_):
        raise RuntimeError("client gone")

    bad = sched.submit(Request(_prompt(3, 1), text_plan(3), on_progress=boom))
    good = sched.submit(Request(_prompt(3, 2), text_plan(3)))
    sched.run_until_idle()
    assert bad.status == good.status == "finished"


def test_requests_that_can_never_run_are_refused(model):
    sched = Scheduler(model, VOCAB, max_rows=1, max_len=32)
    with pytest.raises(ValueError, match="needs 2 rows"):
        sched.submit(Request([1], text_plan(2), negative_prompt=[1]))
    with pytest.raises(ValueError, match="exceed the 32 slots"):
        sched.submit(Request(_prompt(10, 0), text_plan(30)))
    with pytest.raises(ValueError, match="at least one token"):
        sched.submit(Request([], text_plan(2)))
    with pytest.raises(ValueError, match="token ids"):
        sched.submit(Request([9999], text_plan(2)))


def test_worker_thread_drives_concurrent_submissions(model):
    """Submissions from several threads while a worker steps: every request ends, all rows come back."""
    sched = Scheduler(model, VOCAB, max_rows=4, max_len=64)
    stop = threading.Event()

    def work():
        while not stop.is_set():
            if sched.wait_for_work(0.05):
                sched.step()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    reqs = [Request(_prompt(3 + i, i), _plan(2, 2), negative_prompt=[1, 2], sampling=GREEDY) for i in range(6)]
    tickets = []
    submitters = [threading.Thread(target=lambda r=r: tickets.append(sched.submit(r))) for r in reqs]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join()
    results = [t.wait(30) for t in tickets]
    stop.set()
    worker.join(5)
    for ticket, tokens in zip(tickets, results, strict=True):
        assert tokens == _alone(model, ticket.request)
    assert sched.stats().rows_in_use == 0
