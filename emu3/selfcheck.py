"""`emu3 selfcheck`: build tiny random models and check the invariants a user relies on.

Each check is a small function that raises on failure; the command prints one line per check and
exits non-zero if any failed. It needs no weights, data or network, and runs in a few seconds.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

import torch


def _check_cached_decode() -> str:
    from emu3.model.config import tiny
    from emu3.model.init import build_decoder

    model = build_decoder(tiny(), seed=0).eval()
    tokens = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = model(tokens)
        cache = model.new_cache(2, 16)
        steps = [model(tokens[:, :4], cache=cache)] + [model(tokens[:, i : i + 1], cache=cache) for i in range(4, 16)]
    err = (torch.cat(steps, 1) - full).abs().max().item()
    if err > 1e-4:
        raise AssertionError(f"cached decode differs from the full forward by {err:.2e}")
    return f"cached decode == full forward (max diff {err:.1e})"


def _check_padded_batch() -> str:
    from emu3.model.config import tiny
    from emu3.model.init import build_decoder

    model = build_decoder(tiny(), seed=1).eval()
    short, long = torch.randint(1, 512, (5,)), torch.randint(1, 512, (9,))
    tokens = torch.stack([torch.cat([torch.zeros(4, dtype=torch.long), short]), long])
    pos = torch.stack([torch.cat([torch.full((4,), -1), torch.arange(5)]), torch.arange(9)])
    with torch.inference_mode():
        batch = model(tokens, pos)
        err = max((batch[0, 4:] - model(short[None])[0]).abs().max(), (batch[1] - model(long[None])[0]).abs().max())
    if err > 1e-4:
        raise AssertionError(f"left-padded batch differs from rows run alone by {err:.2e}")
    return f"left-padded batch == rows one by one (max diff {err:.1e})"


def _check_save_load() -> str:
    from emu3.convert.decoder import load_decoder, save_decoder
    from emu3.model.config import tiny
    from emu3.model.init import build_decoder

    model = build_decoder(tiny(), seed=2).eval()
    tokens = torch.randint(0, 512, (1, 8))
    with tempfile.TemporaryDirectory() as folder:
        save_decoder(model, folder, bos_id=1, eos_id=2, pad_id=0)
        again = load_decoder(folder)
    with torch.inference_mode():
        if not torch.equal(model(tokens), again(tokens)):
            raise AssertionError("a saved and reloaded decoder gives different logits")
    return "save (transformers layout) -> load round trip is exact"


CHECKS: list[Callable[[], str]] = [_check_cached_decode, _check_padded_batch, _check_save_load]


def run_selfcheck(verbose: bool = True) -> int:
    failed = 0
    start = time.perf_counter()
    for check in CHECKS:
        try:
            message = check()
            if verbose:
                print(f"ok    {message}")
        except Exception as err:  # noqa: BLE001 - report every failed check, then fail the command
            failed += 1
            print(f"FAIL  {check.__name__.removeprefix('_check_')}: {err}")
    total = len(CHECKS)
    print(f"selfcheck: {total - failed}/{total} checks passed in {time.perf_counter() - start:.1f}s")
    return 1 if failed else 0
