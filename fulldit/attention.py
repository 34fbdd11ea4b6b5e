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


Index = slice | list[int]


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
    groups: tuple[tuple[Index, Index | None], ...]  # (rows, keys) per pattern


def key_mask(mask: torch.Tensor | None) -> KeyMask | None:
    """The KeyMask of a (B, Lk) bool mask, or None when every key is real (the dense fast path)."""
    if mask is None:
        return None
    cpu = mask.cpu()
    if bool(cpu.all()):
        return None
    return KeyMask(mask, _mask_groups(cpu.numpy().tobytes(), tuple(cpu.shape)))


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


def _take(x: torch.Tensor, idx: Index, dim: int) -> torch.Tensor:
    if isinstance(idx, slice):
        return x[idx] if dim == 0 else x[:, idx]
    return x.index_select(dim, torch.tensor(idx, device=x.device))


# eager only: FullDiT.compile_blocks compiles the dense stretches around attention, never attention itself
def _attend_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, km: KeyMask) -> torch.Tensor:
    if len(km.groups) > MAX_DENSE_GROUPS:  # many patterns: one masked call (rows without keys: computed, then zeroed)
        empty = ~km.mask.any(1)  # (B,)
        out = sdpa(q, k, v, km.mask | empty[:, None])
        return torch.where(empty[:, None, None, None], torch.zeros_like(out), out)
    if len(km.groups) == 1 and km.groups[0][1] is not None:  # every row sees the same keys
        keys = km.groups[0][1]
        return sdpa(q, _take(k, keys, 1), _take(v, keys, 1))
    out = torch.zeros_like(q)
    for rows, keys in km.groups:
        if keys is None:
            continue  # rows without a real key: zeros
        kr, vr = _take(_take(k, rows, 0), keys, 1), _take(_take(v, rows, 0), keys, 1)
        y = sdpa(_take(q, rows, 0), kr, vr)
        if isinstance(rows, slice):
            out[rows] = y
        else:
            out = out.index_copy(0, torch.tensor(rows, device=q.device), y)
    return out


# -- attention with its log-sum-exp: the gated merge of two attentions (model.gated_video_attention) ------------


def attend_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: KeyMask | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention (B, Lq, H, d) and the log-sum-exp of its scaled scores (B, Lq, H) fp32, both differentiable.

    Two attentions over disjoint keys merge exactly into one softmax over all keys by their log-sum-exps:
    out = (Z1 O1 + Z2 O2) / (Z1 + Z2), Z = exp(lse). The forward runs the fused kernels that return the
    log-sum-exp; rows without a real key give zeros and -inf.
    """
    return _AttentionLSE.apply(q, k, v, mask)


class _AttentionLSE(torch.autograd.Function):
    """Forward: fused kernels. Backward: recomputed through SDPA, the log-sum-exp's share included.

    d lse_i / d s_ij = p_ij, so the gradient of sum_i g_i lse_i equals that of the surrogate
    sum_i g_i * scale * q_i . (sum_j p_ij k_j) with the probabilities p held fixed: an attention whose values
    are the keys, over detached scores. Both terms use the same dense kernels as the forward.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: KeyMask | None):  # noqa: ANN205
        ctx.save_for_backward(q, k, v)
        ctx.mask = mask
        return _lse_forward(q, k, v, mask)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor, grad_lse: torch.Tensor):  # noqa: ANN205
        q, k, v = ctx.saved_tensors
        with torch.enable_grad():
            q_, k_, v_ = (t.detach().requires_grad_() for t in (q, k, v))
            outputs, grads = [attend(q_, k_, v_, ctx.mask)], [grad_out]
            if grad_lse is not None:
                keys_as_values = attend(q_.detach(), k_.detach(), k_, ctx.mask)  # sum_j p_ij k_j, p fixed
                scale = q.shape[-1] ** -0.5
                outputs.append((q_.float() * keys_as_values.float()).sum(-1) * scale)  # (B, Lq, H)
                grads.append(torch.nan_to_num(grad_lse, nan=0.0, posinf=0.0, neginf=0.0))
            dq, dk, dv = torch.autograd.grad(outputs, (q_, k_, v_), grads, allow_unused=True)
        return dq, dk, dv, None


def _lse_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: KeyMask | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if mask is None:
        return _lse_dense(q, k, v)
    out = torch.zeros_like(q)
    lse = torch.full(q.shape[:3], float("-inf"), device=q.device, dtype=torch.float32)
    for rows, keys in mask.groups:
        if keys is None:
            continue  # rows without a real key: zeros and -inf
        o, l = _lse_dense(_take(q, rows, 0), _take(_take(k, rows, 0), keys, 1), _take(_take(v, rows, 0), keys, 1))
        idx = torch.arange(q.shape[0], device=q.device)[rows] if isinstance(rows, slice) else torch.tensor(rows)
        out, lse = out.index_copy(0, idx.to(q.device), o), lse.index_copy(0, idx.to(q.device), l)
    return out, lse


def _lse_dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, Lq, H, d), lse (B, Lq, H) fp32) of dense attention from a fused kernel that returns both."""
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, d)
    out, lse = _lse_kernel(q.device.type, q.dtype)(qt, kt, vt)
    return out.transpose(1, 2), lse.reshape(qt.shape[:3]).float().transpose(1, 2)


def _cpu_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)


def _cuda_cudnn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True)
    return out[0], out[1]


def _cuda_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)
    return out[0], out[1]


def _cuda_efficient(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[:2]
    return out, lse[..., : q.shape[2]]  # the kernel pads the query axis of the log-sum-exp


def _math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    return (scores.softmax(-1) @ v.float()).to(q.dtype), scores.logsumexp(-1)


@lru_cache(maxsize=8)
def _lse_kernel(device: str, dtype: torch.dtype):  # noqa: ANN202
    """The first fused kernel of this device whose output and log-sum-exp match the math on a probe (once).

    The private ATen entry points differ between kernels and releases in layout and padding; checking each on a
    small probe keeps a wrong convention from passing silently. The math fallback is exact but quadratic.
    """
    candidates = [_cpu_flash] if device == "cpu" else [_cuda_cudnn, _cuda_flash, _cuda_efficient]
    g = torch.Generator(device="cpu").manual_seed(0)
    # (B, H, L, d) views of (B, L, H, d) tensors: the layout `_lse_dense` passes
    q, k, v = (torch.randn(2, n, 2, 128, generator=g).to(device, dtype).transpose(1, 2) for n in (40, 70, 70))
    want_out, want_lse = _math(q.float(), k.float(), v.float())
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    for kernel in candidates:
        try:
            out, lse = kernel(q, k, v)
            lse = lse.reshape(want_lse.shape).float()
        except (RuntimeError, NotImplementedError):
            continue
        if (out.float() - want_out).abs().max() < tol and (lse - want_lse).abs().max() < tol:
            return kernel
    return _math
