"""Continuous batching: many requests share one decode batch; they join and leave at any step.

The Generator runs one batch from start to end. A server gets requests one by one, of different
lengths, and wants each answered as soon as it is done. The Scheduler keeps a fixed number of rows
of a RowCache (row_cache.py). At every step boundary it

  1. retires cancelled requests and frees their rows,
  2. admits waiting requests (FIFO) into free rows: each request's prompt rows (the prompt, and its
     negative prompt when it uses classifier-free guidance) are prefilled in a small cache of their
     own and copied into the big one,
  3. picks one token for every running request, with that request's plan, guidance, sampler and
     seeded torch.Generator (the same rule as Generator.pick, applied per request),
  4. retires requests that reached EOS or the end of their plan, and
  5. feeds the picked tokens of the others through the decoder in one forward over the rows in use.

A request alone gives the tokens the Generator gives it alone (tested), whatever runs beside it:
rows never see each other (the mask is per row) and each request samples from its own generator.

Thread-safety: `submit` and `Ticket.cancel` may be called from any thread; `step` from one thread
(a server's worker). Callbacks run on the thread that calls `step`.

Shapes: R rows of the cache, D model dim, V vocab.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from emu3.generate.constraints import VISUAL, constrain, token_set_masks
from emu3.generate.generator import VocabLayout, _left_pad
from emu3.generate.guidance import Schedule, cfg_logits, scheduled_scale
from emu3.generate.row_cache import RowCache
from emu3.generate.sampling import SamplingConfig, sample
from emu3.model.decoder import Emu3Decoder

log = logging.getLogger(__name__)

Progress = Callable[[int, int, int], None]  # (tokens done, tokens total, newest token)
Status = Literal["waiting", "running", "finished", "cancelled", "failed"]


class QueueFull(RuntimeError):
    """The waiting queue holds `max_queue` requests already; try again later."""


class Cancelled(RuntimeError):
    """The request was cancelled before it finished."""


@dataclass
class Request:
    """One generation: a prompt, the plan of what to generate (constraints.py) and how to sample it."""

    prompt: Sequence[int]
    plan: Tensor
    negative_prompt: Sequence[int] | None = None  # turns on classifier-free guidance
    guidance: float = 3.0
    schedule: Schedule = "constant"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    seed: int | None = None
    on_progress: Progress | None = None

    @property
    def n_rows(self) -> int:
        return 1 if self.negative_prompt is None else 2


class Ticket:
    """The caller's handle on a submitted request: status, tokens so far, cancel, wait."""

    def __init__(self, request_id: int, request: Request, scheduler: Scheduler) -> None:
        self.id = request_id
        self.request = request
        self.tokens: list[int] = []
        self.total = int(request.plan.numel())
        self.status: Status = "waiting"
        self.finish_reason: Literal["stop", "length"] | None = None
        self.error: BaseException | None = None
        self._scheduler = scheduler
        self._cancel_asked = False
        self._done = threading.Event()
        self._callbacks: list[Callable[[Ticket], None]] = []

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> bool:
        """Ask to stop; True unless the request had already ended. A running request leaves at the next step."""
        return self._scheduler._cancel(self)

    def wait(self, timeout: float | None = None) -> list[int]:
        """Block until the request ends; its tokens (EOS included), or raise Cancelled / its error."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"request {self.id} still {self.status} after {timeout} s")
        if self.status == "cancelled":
            raise Cancelled(f"request {self.id} was cancelled")
        if self.error is not None:
            raise self.error
        return list(self.tokens)

    def add_done_callback(self, fn: Callable[[Ticket], None]) -> None:
        """Call fn(ticket) once the request ends (at once if it already has)."""
        with self._scheduler._lock:
            if not self.done:
                self._callbacks.append(fn)
                return
        fn(self)

    def _end(self, status: Status, error: BaseException | None = None) -> None:
        with self._scheduler._lock:
            self.status, self.error = status, error
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            _safely(fn, self)


@dataclass
class SchedulerStats:
    waiting: int
    running: int
    rows_in_use: int
    max_rows: int
    tokens_generated: int  # since start
    steps: int  # decode steps since start


@dataclass(eq=False)
class _Running:
    """Host-side bookkeeping of an admitted request."""

    ticket: Ticket
    rows: list[int]  # [cond] or [cond, uncond]
    plan: list[int]
    plan_len: int  # entries the plan really asks for (Generator's progress denominator)
    next_pos: list[int]  # per row: position of the next token
    slots_used: int  # per row: slots written (the same for both rows)
    rng: torch.Generator
    step: int = 0


class Scheduler:
    def __init__(
        self,
        model: Emu3Decoder,
        vocab: VocabLayout,
        *,
        max_rows: int = 8,
        max_len: int | None = None,
        max_queue: int = 64,
    ) -> None:
        """`max_rows` cache rows (a guided request takes two); `max_len` slots per row (prompt + new
        tokens; default the model's context); at most `max_queue` requests wait for a row."""
        if max_rows < 1 or max_queue < 0:
            raise ValueError(f"need max_rows >= 1 and max_queue >= 0, got {max_rows} and {max_queue}")
        self.model = model.eval()
        self.vocab = vocab
        self.max_rows, self.max_queue = max_rows, max_queue
        self.max_len = max_len or model.cfg.max_seq_len
        self.masks = token_set_masks(model.cfg.vocab_size, vocab.visual_start, vocab.codebook_size, vocab.pad_id)
        with torch.inference_mode():
            self.cache = RowCache.for_model(model, max_rows, self.max_len)
            self.hidden = torch.zeros(max_rows, model.cfg.dim, dtype=model.lm_head.weight.dtype, device=self.device)
        self.masks = self.masks.to(self.device)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: deque[Ticket] = deque()
        self._running: list[_Running] = []
        self._free_rows = list(range(max_rows))  # a heap: the lowest rows are used first
        self._ids = itertools.count(1)
        self.tokens_generated = 0
        self.steps = 0

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    # ------------------------------------------------------------ any thread

    def submit(self, request: Request) -> Ticket:
        """Queue a request; raises ValueError if it can never run here, QueueFull if the queue is full."""
        self._validate(request)
        with self._lock:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting (limit {self.max_queue})")
            ticket = Ticket(next(self._ids), request, self)
            self._waiting.append(ticket)
            self._wake.notify_all()
        return ticket

    def stats(self) -> SchedulerStats:
        with self._lock:
            waiting, running = len(self._waiting), list(self._running)
        rows = sum(len(r.rows) for r in running)
        return SchedulerStats(waiting, len(running), rows, self.max_rows, self.tokens_generated, self.steps)

    def has_work(self) -> bool:
        with self._lock:
            return bool(self._waiting or self._running)

    def wait_for_work(self, timeout: float) -> bool:
        """Block until something is waiting or running (or `timeout` seconds pass)."""
        with self._wake:
            return self._wake.wait_for(lambda: self._waiting or self._running, timeout)

    def cancel_all(self) -> None:
        with self._lock:
            tickets = list(self._waiting) + [r.ticket for r in self._running]
        for ticket in tickets:
            ticket.cancel()

    def _cancel(self, ticket: Ticket) -> bool:
        with self._lock:
            if ticket.done:
                return False
            ticket._cancel_asked = True
            queued = ticket in self._waiting
            if queued:
                self._waiting.remove(ticket)
            self._wake.notify_all()
        if queued:
            ticket._end("cancelled")
        return True

    # ------------------------------------------------------------ the worker thread

    @torch.inference_mode()
    def step(self) -> None:
        """One scheduling round: retire cancelled, admit, pick one token each, retire finished, feed."""
        self._retire([r for r in self._running if r.ticket._cancel_asked], "cancelled")
        self._admit()
        if not self._running:
            return
        try:
            picked = self._pick_all()
        except Exception as err:  # a failed step must not take the worker down: fail what ran in it
            log.exception("decode step failed")
            self._retire(list(self._running), "failed", err)
            return
        finished, feeding = [], []
        for run, token in zip(self._running, picked, strict=True):
            run.ticket.tokens.append(token)
            run.step += 1
            self.tokens_generated += 1
            if run.ticket.request.on_progress is not None:
                _safely(run.ticket.request.on_progress, run.step, run.ticket.total, token)
            if token == self.vocab.eos_id or run.step >= len(run.plan):
                run.ticket.finish_reason = "stop" if token == self.vocab.eos_id else "length"
                finished.append(run)
            else:
                feeding.append(token)
        self._retire(finished, "finished")
        self.steps += 1
        if not self._running:
            return
        try:
            self._feed(feeding)
        except Exception as err:
            log.exception("decode forward failed")
            self._retire(list(self._running), "failed", err)

    def run_until_idle(self, max_steps: int = 1_000_000) -> None:
        """Step until nothing waits or runs (tests, offline use)."""
        for _ in range(max_steps):
            if not self.has_work():
                return
            self.step()
        raise RuntimeError(f"still busy after {max_steps} steps")

    # ------------------------------------------------------------ helpers

    def _validate(self, request: Request) -> None:
        rows = [request.prompt] + ([] if request.negative_prompt is None else [request.negative_prompt])
        if any(len(r) == 0 for r in rows):
            raise ValueError("every prompt must hold at least one token")
        vocab_size = self.model.cfg.vocab_size
        if any(not 0 <= t < vocab_size for r in rows for t in r):
            raise ValueError(f"prompt token ids must lie in [0, {vocab_size})")
        if request.plan.ndim != 1 or request.plan.numel() == 0:
            raise ValueError("the plan must be a non-empty 1-D tensor")
        if request.n_rows > self.max_rows:
            raise ValueError(f"the request needs {request.n_rows} rows; this scheduler has {self.max_rows}")
        need = max(len(r) for r in rows) + request.plan.numel()
        if need > self.max_len:
            raise ValueError(f"prompt + new tokens ({need}) exceed the {self.max_len} slots of a cache row")

    def _admit(self) -> None:
        while True:
            with self._lock:
                if not self._waiting or len(self._free_rows) < self._waiting[0].request.n_rows:
                    return
                ticket = self._waiting.popleft()
                rows = [heapq.heappop(self._free_rows) for _ in range(ticket.request.n_rows)]
                ticket.status = "running"
            try:
                self._running.append(self._prefill(ticket, rows))
            except Exception as err:
                log.exception("prefill failed")
                self._release(rows)
                ticket._end("failed", err)

    def _prefill(self, ticket: Ticket, rows: list[int]) -> _Running:
        """Run the request's prompt rows through the decoder in a cache of their own; copy it into `rows`."""
        request = ticket.request
        prompts = [request.prompt] + ([] if request.negative_prompt is None else [request.negative_prompt])
        tokens, positions = _left_pad(prompts, self.vocab.pad_id, self.device)  # (n, P)
        small = self.model.new_cache(len(prompts), tokens.shape[1])
        hidden = self.model.hidden(tokens, positions, small)[:, -1]  # (n, D)
        self.cache.load_rows(rows, small)
        self.hidden[rows] = hidden.to(self.hidden.dtype)
        rng = torch.Generator(device=self.device)
        rng.manual_seed(request.seed) if request.seed is not None else rng.seed()
        plan = request.plan.tolist()
        plan_len = max(1, sum(1 for p in plan if p != self.vocab.pad_id))
        return _Running(ticket, rows, plan, plan_len, [len(p) for p in prompts], tokens.shape[1], rng)

    def _pick_all(self) -> list[int]:
        """One token per running request, in the order of self._running."""
        picked: list[int | None] = [None] * len(self._running)
        groups: dict[tuple[bool, bool], list[int]] = {}
        for i, run in enumerate(self._running):
            entry = run.plan[run.step]
            if entry >= 0:
                picked[i] = entry
            else:
                groups.setdefault((entry == VISUAL, len(run.rows) == 2), []).append(i)
        for (visual, guided), members in groups.items():
            for i, token in zip(members, self._pick_group([self._running[i] for i in members], visual, guided),
                                strict=True):  # fmt: skip
                picked[i] = token
        return picked  # type: ignore[return-value]

    def _pick_group(self, runs: list[_Running], visual: bool, guided: bool) -> list[int]:
        """Generator.pick's rule for requests at a step of one kind: visual-only or text, guided or not."""
        rows = [r.rows[0] for r in runs] + ([r.rows[1] for r in runs] if guided else [])
        hidden = self.hidden[rows]  # (G or 2G, D)
        start = self.vocab.visual_start
        logits = self.model.logits(hidden, slice(start, start + self.vocab.codebook_size) if visual else None)
        cond = logits[: len(runs)]  # min-p's reference: the conditional rows
        if guided:
            logits = cfg_logits(logits, self._guidance(runs))  # (G, V')
        if not visual:
            entries = torch.tensor([r.plan[r.step] for r in runs], device=self.device)
            logits, cond = constrain(logits, entries, self.masks), constrain(cond, entries, self.masks)
        tokens = []
        for i, run in enumerate(runs):
            tokens.append(sample(logits[i : i + 1], run.ticket.request.sampling, run.rng, reference=cond[i : i + 1]))
        out = torch.cat(tokens) + (start if visual else 0)
        return out.tolist()

    def _guidance(self, runs: list[_Running]) -> Tensor:
        """(G,) guidance scale of each request at its current step (computed as Generator.pick does)."""
        device = self.device
        scale = torch.tensor([r.ticket.request.guidance for r in runs], dtype=torch.float32, device=device)
        if all(r.ticket.request.schedule == "constant" for r in runs):
            return scale
        steps = torch.tensor([float(r.step) for r in runs], device=device)
        progress = steps / torch.tensor([r.plan_len for r in runs], device=device)
        return torch.cat([scheduled_scale(scale[i : i + 1], progress[i : i + 1], r.ticket.request.schedule)
                          for i, r in enumerate(runs)])  # fmt: skip

    def _feed(self, tokens: list[int]) -> None:
        """One decoder forward over the rows in use: each running request's newest token."""
        width = max(row for r in self._running for row in r.rows) + 1
        slots = max(r.slots_used for r in self._running) + 1
        feed = torch.full((width, 1), self.vocab.pad_id, dtype=torch.long)
        pos = torch.full((width, 1), -1, dtype=torch.long)
        for run, token in zip(self._running, tokens, strict=True):
            for j, row in enumerate(run.rows):
                feed[row, 0], pos[row, 0] = token, run.next_pos[j]
                run.next_pos[j] += 1
            run.slots_used += 1
        window = self.cache.window(width, slots)
        hidden = self.model.hidden(feed.to(self.device), pos.to(self.device), window)[:, -1]  # (width, D)
        self.hidden[:width] = hidden.to(self.hidden.dtype)

    def _retire(self, runs: list[_Running], status: Status, error: BaseException | None = None) -> None:
        if not runs:
            return
        self._running = [r for r in self._running if r not in runs]
        self.cache.clear_rows([row for r in runs for row in r.rows])
        for run in runs:
            self._release(run.rows)
            run.ticket._end(status, error)

    def _release(self, rows: list[int]) -> None:
        with self._lock:
            for row in rows:
                heapq.heappush(self._free_rows, row)
            self._wake.notify_all()


def _safely(fn: Callable, *args) -> None:
    """Callbacks belong to callers; one that raises must not stop the worker."""
    try:
        fn(*args)
    except Exception:
        log.exception("callback %r raised", fn)
