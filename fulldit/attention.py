"""Attention calls that keep PyTorch's fast kernels: a key mask is split into dense SDPA calls.

SDPA's fastest kernels (cuDNN and flash on Hopper) take no mask: a boolean mask sends it to the
memory-efficient or math kernel, and every masked key still costs its FLOPs. fulldit's masks all come
from padding — guidance branches without conditions, samples with fewer reference images, shorter
prompts — so the rows of a batch fall into a few mask patterns. Rows sharing a pattern see the same
keys: `attend` gathers each pattern's real keys and runs one dense call per pattern (slices, not copies,
where rows or keys are contiguous). Beyond `MAX_DENSE_GROUPS` patterns (training batches with random
condition dropout) one masked call is cheaper than many small ones.

Selective activation checkpointing (`save_attention_context`) keeps the output of these calls in training and
recomputes everything else: attention is most of the FLOPs of a long sequence and the cheapest to store.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

MAX_DENSE_GROUPS = 4

_aten = torch.ops.aten
SDPA_OPS = {
    _aten._scaled_dot_product_cudnn_attention.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
}


def _save_attention(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in SDPA_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def save_attention_context():
    """`checkpoint(..., context_fn=save_attention_context)`: keep attention outputs, recompute the rest."""
    return create_selective_checkpoint_contexts(_save_attention)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA on (B, L, H, d) tensors; mask (B, Lk) bool or None."""
    m = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, Lk)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=m)
    return out.transpose(1, 2)  # (B, Lq, H, d)


Index = slice | list[int] | torch.Tensor  # a tensor: int64 positions on the device of the tensors it indexes


def _as_index(idx: list[int]) -> Index:
    """A slice when the sorted indices are contiguous (a view, no copy), else the list."""
    return slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == len(idx) else idx


@lru_cache(maxsize=64)
def _mask_groups(mask_bytes: bytes, shape: tuple[int, int]) -> tuple[tuple[Index, Index | None], ...]:
    """(rows, keys) of each mask pattern (keys None: no real key).

    On the CPU and cached by content: the same mask comes back in every block and every step, and torch.unique
    over long rows is slow on a GPU (one thread compares whole rows).
    """
    mask = torch.frombuffer(bytearray(mask_bytes), dtype=torch.bool).view(shape)
    patterns, inverse = torch.unique(mask, dim=0, return_inverse=True)
    groups = []
    for p, pattern in enumerate(patterns):
        rows = (inverse == p).nonzero()[:, 0].tolist()
        keys = pattern.nonzero()[:, 0].tolist()
        groups.append((_as_index(rows), _as_index(keys) if keys else None))
    return tuple(groups)


@dataclass(frozen=True, eq=False)
class KeyMask:
    """A key-padding mask (B, Lk) on the device with its row patterns, found once on the CPU.

    A forward builds each mask's KeyMask once (`key_mask`) and every block reuses it: finding the patterns
    needs the mask on the CPU, and one device-to-host copy per attention call would stall the GPU queue.
    """

    mask: torch.Tensor  # (B, Lk) bool
    groups: tuple[tuple[Index, Index | None], ...]  # (rows, keys) per pattern: slices or index tensors on the device


def key_mask(mask: torch.Tensor | None) -> KeyMask | None:
    """The KeyMask of a (B, Lk) bool mask, or None when every key is real (the dense fast path)."""
    if mask is None:
        return None
    cpu = mask.cpu()
    if bool(cpu.all()):
        return None
    groups = _mask_groups(cpu.numpy().tobytes(), tuple(cpu.shape))
    return KeyMask(
        mask, tuple((index_tensor(rows, mask.device), index_tensor(keys, mask.device)) for rows, keys in groups)
    )


def index_tensor(idx: Index | None, device: torch.device) -> Index | None:
    """A list of indices as a tensor on the device; slices and tensors as they are. `key_mask` makes its lists into
    tensors once per mask: each host-to-device copy of a list waits for the GPU's queue to drain, and every block's
    attention (forward and backward) reads the same groups."""
    return torch.tensor(idx, device=device) if isinstance(idx, list) else idx


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: KeyMask | torch.Tensor | None) -> torch.Tensor:
    """Attention of q (B, Lq, H, d) to the keys k, v (B, Lk, H, d) that the mask (B, Lk) marks real.

    None (or an all-true mask) is one dense call. A row without any real key gets zeros. Pass a KeyMask
    (`key_mask`) where the same mask serves many calls; a plain tensor is converted on each call.
    """
    if isinstance(mask, torch.Tensor):
        mask = key_mask(mask)
    if mask is None:
        return sdpa(q, k, v)
    return _attend_masked(q, k, v, mask)


def take(x: torch.Tensor, idx: Index, dim: int) -> torch.Tensor:
    """x[idx] along dim 0 or 1: a view for a slice, a gather for indices."""
    if isinstance(idx, slice):
        return x[idx] if dim == 0 else x[:, idx]
    return x.index_select(dim, index_tensor(idx, x.device))


# eager only: FullDiT.compile_blocks compiles the dense stretches around attention, never attention itself
def _attend_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, km: KeyMask) -> torch.Tensor:
    if len(km.groups) > MAX_DENSE_GROUPS:  # many patterns: one masked call (rows without keys: computed, then zeroed)
        empty = ~km.mask.any(1)  # (B,)
        out = sdpa(q, k, v, km.mask | empty[:, None])
        return torch.where(empty[:, None, None, None], torch.zeros_like(out), out)
    if len(km.groups) == 1 and km.groups[0][1] is not None:  # every row sees the same keys
        keys = km.groups[0][1]
        return sdpa(q, take(k, keys, 1), take(v, keys, 1))
    out = torch.zeros_like(q)
    for rows, keys in km.groups:
        if keys is None:
            continue  # rows without a real key: zeros
        kr, vr = take(take(k, rows, 0), keys, 1), take(take(v, rows, 0), keys, 1)
        y = sdpa(take(q, rows, 0), kr, vr)
        if isinstance(rows, slice):
            out[rows] = y
        else:
            out = out.index_copy(0, index_tensor(rows, q.device), y)
    return out
