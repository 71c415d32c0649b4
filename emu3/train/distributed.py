"""Running the recipes on many processes: torchrun environment, FSDP2 wrapping, full-state export.

    torchrun --nproc_per_node=2 -m emu3 pretrain configs/pretrain/tiny.yaml dist=fsdp

Each process reads its own slice of every global batch (`DistInfo.shard`). With `dist=fsdp`, every
decoder Block and then the whole model are wrapped with `fully_shard` (FSDP2): parameters live as
sharded DTensors and are gathered per block for compute. `dist=ddp` replicates the model instead.
On CPU the back-end is gloo; on GPUs, NCCL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        """This rank's slice of a global batch (the batch size must divide evenly)."""
        if len(items) % self.world_size:
            raise ValueError(f"global batch of {len(items)} does not split over {self.world_size} processes")
        n = len(items) // self.world_size
        return items[self.rank * n : (self.rank + 1) * n]


def init_distributed(mode: str, device: str = "cpu") -> DistInfo:
    """`mode` "none" runs one process; "ddp"/"fsdp" join the torchrun process group."""
    if mode == "none":
        return DistInfo(device=device)
    if "RANK" not in os.environ:
        raise SystemExit(f"dist={mode} needs to run under torchrun, e.g. torchrun --nproc_per_node=2 -m emu3 ...")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    rank, world, local = dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    if device.startswith("cuda"):
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def wrap_model(model: nn.Module, mode: str, *, bf16: bool = False) -> nn.Module:
    if mode == "none":
        return model
    if mode == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    if mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        param_dtype = torch.bfloat16 if bf16 and _fast_bf16() else None
        policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
        for block in getattr(model, "blocks", []):
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    raise ValueError(f"unknown dist mode {mode!r}; use none, ddp or fsdp")


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict (every rank must call it; all get the full tensors)."""
    state = unwrap(model).state_dict()
    out = {}
    for key, value in state.items():
        out[key] = value.full_tensor() if hasattr(value, "full_tensor") else value
    return {k: v.detach().cpu() for k, v in out.items()}


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.world_size == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / info.world_size


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def _fast_bf16() -> bool:
    from emu3.model.precision import bf16_is_fast

    return bf16_is_fast("cuda" if torch.cuda.is_available() else "cpu")
