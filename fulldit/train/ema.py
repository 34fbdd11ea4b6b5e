"""Exponential moving average of the trainable weights: what samples and the shipped checkpoint use.

Kept in fp32 beside the parameters and sharded like them (under FSDP2 each rank holds its shard), updated
with one fused `lerp` per step. Warm-up as in common practice: the decay is min(decay, (1 + n) / (10 + n)),
so early weights are not averaged into the model for thousands of steps.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor


class EMA:
    """EMA of `module`'s parameters, keyed by parameter name."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.names = [n for n, p in module.named_parameters() if p.requires_grad]
        params = dict(module.named_parameters())
        self.shadow = [params[n].detach().float().clone() for n in self.names]
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        params = dict(module.named_parameters())
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [params[n].detach().float() for n in self.names], 1 - d)
        self.updates += 1

    def full_state(self) -> dict[str, torch.Tensor]:
        """Full (unsharded) fp32 tensors on CPU by parameter name. Collective under FSDP2: call on every rank."""
        out = {}
        for name, t in zip(self.names, self.shadow):
            out[name] = (t.full_tensor() if isinstance(t, DTensor) else t).cpu()
        return out

    @torch.no_grad()
    def load_full_state(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Restore from full tensors (each rank keeps its own shard under FSDP2)."""
        for i, name in enumerate(self.names):
            full = state[name].to(torch.float32)
            t = self.shadow[i]
            if isinstance(t, DTensor):
                self.shadow[i] = distribute_tensor(full.to(t.device), t.device_mesh, t.placements)
            else:
                t.copy_(full.to(t.device))
        self.updates = updates
