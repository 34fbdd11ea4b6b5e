"""Attention with its log-sum-exp, and the gated merge of two attentions that converted Wan2.1 backbones train.

`gated_merge` is issue #15's gate: the video queries attend to the video keys and to the condition keys in two
dense calls, merged by their log-sum-exps with a per-head gate g, out = (Z_v O_v + g Z_c O_c) / (Z_v + g Z_c). That
is one softmax over [video, conditions] in which the condition keys' scores are raised by log g, so its gradient is
the gradient of one attention: each of the two calls' fused backward kernels, given the *merged* output and the
merged log-sum-exp (minus log g for the condition keys), returns exactly its share, as ring attention does for the
blocks of one softmax. Training costs two forward and two backward kernels, as full attention over the same keys.

The kernels are private ATen entry points whose conventions differ between kernels and releases; each is checked
once on a probe against the written-out softmax (`_forward_kernel`, `_backward_kernel`), and of the backward kernels
that pass the fastest is kept (timed once). Where no fused backward passes, `gated_merge` differentiates the
log-sum-exps instead (`attend_lse`: exact, about twice the cost).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

import torch

from fulldit.attention import Index, KeyMask, attend, index_tensor, take

_aten = torch.ops.aten


def gated_merge(
    gate: torch.Tensor,
    qv: torch.Tensor,
    kv: torch.Tensor,
    vv: torch.Tensor,
    kc: torch.Tensor,
    vc: torch.Tensor,
    cond_keys: KeyMask | None,
) -> torch.Tensor:
    """Video queries qv (B, Nv, H, d) over the video keys and the condition keys, merged with gate (H,) in [0, 1].

    Returns (B, Nv, H, d). Rows whose mask has no condition key get the video's attention alone.
    """
    if _backward_kernel(qv.device.type, qv.dtype) is None:
        o_v, l_v = attend_lse(qv, kv, vv, None)
        o_c, l_c = attend_lse(qv, kc, vc, cond_keys)
        out, _, _ = _merge(gate, o_v, l_v, o_c, l_c)
        return out
    return _GatedMerge.apply(gate, qv, kv, vv, kc, vc, cond_keys)


def _merge(gate: torch.Tensor, o_v: torch.Tensor, l_v: torch.Tensor, o_c: torch.Tensor, l_c: torch.Tensor) -> tuple:
    """(out, merged log-sum-exp (B, N, H) fp32, the conditions' weight before the gate exp(l_c - L))."""
    m = torch.maximum(l_v, l_c)  # the video keys are always there: finite
    z_v, e_c = torch.exp(l_v - m), torch.exp(l_c - m)  # rows without condition keys: e_c = 0
    z = z_v + gate * e_c  # (B, N, H); the gate is per head, and differentiable here at 0 too (no log g)
    w = (gate * e_c / z)[..., None]  # the conditions' share of the attention mass
    out = (o_v.float() + w * (o_c.float() - o_v.float())).to(o_v.dtype)
    return out, m + z.log(), e_c / z


class _GatedMerge(torch.autograd.Function):
    """Forward: two fused attentions with their log-sum-exps. Backward: their fused backward kernels with the merged
    output and log-sum-exp, and the gate's gradient in closed form:
    d out_i / d g = exp(l_c - L)_i (O_c - out)_i, so dL/dg = sum_i exp(l_c - L)_i dO_i . (O_c - out)_i."""

    @staticmethod
    def forward(ctx, gate, qv, kv, vv, kc, vc, cond_keys):  # noqa: ANN001, ANN205
        o_v, l_v = _lse_forward(qv, kv, vv, None)
        o_c, l_c = _lse_forward(qv, kc, vc, cond_keys)
        out, lse, cond_share = _merge(gate, o_v, l_v, o_c, l_c)
        ctx.save_for_backward(gate, qv, kv, vv, kc, vc, out, o_c, lse, cond_share)
        ctx.cond_keys = cond_keys
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        gate, qv, kv, vv, kc, vc, out, o_c, lse, cond_share = ctx.saved_tensors
        grad_out = grad_out.to(out.dtype).contiguous()  # the fused kernels expect dO laid out as out (not expanded)
        dgate = (cond_share * (grad_out.float() * (o_c.float() - out.float())).sum(-1)).sum((0, 1))
        dq, dkv, dvv = _lse_backward(grad_out, qv, kv, vv, out, lse, None)
        # the condition keys' scores carry + log g; a closed gate's +inf makes their probabilities exactly 0, so nothing
        # reaches the conditions (a converted backbone's start), with no host sync to test for it
        lse_c = lse - gate.float().log()
        dq_c, dkc, dvc = _lse_backward(grad_out, qv, kc, vc, out, lse_c, ctx.cond_keys)
        return dgate.to(gate.dtype), dq + dq_c, dkv, dvv, dkc, dvc, None


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


def _indices(idx: Index, n: int, device: torch.device) -> torch.Tensor:
    """The positions a slice or indices pick out of n, as a tensor (for index_copy and scatter)."""
    return torch.arange(n, device=device)[idx] if isinstance(idx, slice) else index_tensor(idx, device)


def _lse_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: KeyMask | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, Lq, H, d), lse (B, Lq, H) fp32) over the keys the mask marks real, one dense call per pattern."""
    if mask is None:
        return _lse_dense(q, k, v)
    out = torch.zeros_like(q)
    lse = torch.full(q.shape[:3], float("-inf"), device=q.device, dtype=torch.float32)
    for rows, keys in mask.groups:
        if keys is None:
            continue  # rows without a real key: zeros and -inf
        o, l = _lse_dense(take(q, rows, 0), take(take(k, rows, 0), keys, 1), take(take(v, rows, 0), keys, 1))
        idx = _indices(rows, q.shape[0], q.device)
        out, lse = out.index_copy(0, idx, o), lse.index_copy(0, idx, l)
    return out, lse


def _lse_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    mask: KeyMask | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv of the keys' share in a softmax whose output is `out` and log-sum-exp `lse` (B, Lq, H) fp32."""
    if mask is None:
        return _backward_dense(grad_out, q, k, v, out, lse)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for rows, keys in mask.groups:
        if keys is None:
            continue  # rows without a real key took no share
        go, qr, kr, vr, outr, lser = (take(x, rows, 0) for x in (grad_out, q, k, v, out, lse))
        gq, gk, gv = _backward_dense(go, qr, take(kr, keys, 1), take(vr, keys, 1), outr, lser)
        idx = _indices(rows, q.shape[0], q.device)
        at = (idx[:, None], _indices(keys, k.shape[1], k.device)[None])  # (rows, keys) of dk and dv
        dq = dq.index_copy(0, idx, gq)
        dk[at], dv[at] = gk, gv
    return dq, dk, dv


def _lse_dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out (B, Lq, H, d), lse (B, Lq, H) fp32) of dense attention from a fused kernel that returns both."""
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, d)
    out, lse = _forward_kernel(q.device.type, q.dtype)(qt, kt, vt)
    return out.transpose(1, 2), lse.reshape(qt.shape[:3]).float().transpose(1, 2)


def _backward_dense(
    grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    kernel = _backward_kernel(q.device.type, q.dtype)
    t = lambda x: x.transpose(1, 2)  # noqa: E731  (B, H, L, d) views
    lse_bhl = lse.transpose(1, 2).float().contiguous()  # (B, H, Lq)
    dq, dk, dv = kernel(t(grad_out), t(q), t(k), t(v), t(out), lse_bhl)
    return t(dq), t(dk), t(dv)


# -- the fused kernels: (B, H, L, d) views in, forward (out, lse), backward (dq, dk, dv) given out and lse (B, H, Lq)


def _cpu_flash(q, k, v):  # noqa: ANN001, ANN202
    return _aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)


def _cpu_flash_backward(grad_out, q, k, v, out, lse):  # noqa: ANN001, ANN202
    return _aten._scaled_dot_product_flash_attention_for_cpu_backward(grad_out, q, k, v, out, lse, 0.0, False)


def _cuda_cudnn(q, k, v):  # noqa: ANN001, ANN202
    out = _aten._scaled_dot_product_cudnn_attention(q, k, v, None, True)
    return out[0], out[1]


def _cuda_cudnn_backward(grad_out, q, k, v, out, lse):  # noqa: ANN001, ANN202
    return _aten._scaled_dot_product_cudnn_attention_backward(
        grad_out, q, k, v, out, lse[..., None], None, None, None, None, None, q.shape[2], k.shape[2], 0.0, False
    )


def _cuda_flash(q, k, v):  # noqa: ANN001, ANN202
    out = _aten._scaled_dot_product_flash_attention(q, k, v)
    return out[0], out[1]


def _cuda_flash_backward(grad_out, q, k, v, out, lse):  # noqa: ANN001, ANN202
    return _aten._scaled_dot_product_flash_attention_backward(
        grad_out, q, k, v, out, lse, None, None, q.shape[2], k.shape[2], 0.0, False, None, None
    )


def _cuda_efficient(q, k, v):  # noqa: ANN001, ANN202
    out, lse = _aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[:2]
    return out, lse[..., : q.shape[2]]  # the kernel pads the query axis of the log-sum-exp


def _cuda_efficient_backward(grad_out, q, k, v, out, lse):  # noqa: ANN001, ANN202
    padded = torch.nn.functional.pad(lse, (0, -lse.shape[-1] % 32))  # its layout: the query axis padded to 32
    return _aten._scaled_dot_product_efficient_attention_backward(
        grad_out, q, k, v, None, out, padded, None, None, 0.0, [True, True, True, False], False
    )[:3]


def _math(q, k, v):  # noqa: ANN001, ANN202
    scores = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    return (scores.softmax(-1) @ v.float()).to(q.dtype), scores.logsumexp(-1)


def _math_backward(grad_out, q, k, v, out, lse):  # noqa: ANN001, ANN202
    """The written-out gradient of the keys' share: dS = P (dO V^T - D), P = exp(scale S - lse), D = rowsum(dO out)."""
    scale = q.shape[-1] ** -0.5
    qf, kf, vf, go = q.float(), k.float(), v.float(), grad_out.float()
    p = torch.exp(qf @ kf.transpose(-1, -2) * scale - lse[..., None])
    ds = p * (go @ vf.transpose(-1, -2) - (go * out.float()).sum(-1, keepdim=True))
    return (
        ((ds @ kf) * scale).to(q.dtype),
        ((ds.transpose(-1, -2) @ qf) * scale).to(k.dtype),
        (p.transpose(-1, -2) @ go).to(v.dtype),
    )


FORWARD = {"cpu": [_cpu_flash], "cuda": [_cuda_cudnn, _cuda_flash, _cuda_efficient]}
BACKWARD = {
    "cpu": [_cpu_flash_backward],
    "cuda": [_cuda_cudnn_backward, _cuda_flash_backward, _cuda_efficient_backward],
}


def _probe(device: str, dtype: torch.dtype) -> tuple:
    """(B, H, L, d) views of (B, L, H, d) tensors, as `_lse_dense` passes them: 2 x 2 heads, 40 queries, 70 keys."""
    g = torch.Generator(device="cpu").manual_seed(0)
    return tuple(torch.randn(2, n, 2, 128, generator=g).to(device, dtype).transpose(1, 2) for n in (40, 70, 70, 40))


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> bool:
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    return bool((got.float() - want.float()).abs().max() <= tol * max(1.0, float(want.abs().max())))


@lru_cache(maxsize=8)
def _forward_kernel(device: str, dtype: torch.dtype) -> Callable:
    """The first fused kernel of this device whose output and log-sum-exp match the math on a probe (once).

    Checking each on a small probe keeps a wrong layout or padding from passing silently. The math fallback is
    exact but quadratic.
    """
    q, k, v, _ = _probe(device, dtype)
    want_out, want_lse = _math(q.float(), k.float(), v.float())
    for kernel in FORWARD.get(device, []):
        try:
            out, lse = kernel(q, k, v)
            lse = lse.reshape(want_lse.shape).float()
        except (RuntimeError, NotImplementedError, TypeError):
            continue
        if _close(out, want_out, dtype) and _close(lse, want_lse, dtype):
            return kernel
    return _math


@lru_cache(maxsize=8)
def _backward_kernel(device: str, dtype: torch.dtype) -> Callable | None:
    """The fastest fused backward of this device among those that, given another output and log-sum-exp than their
    own (those of a merged softmax: here the output scaled by 0.6 plus noise, the log-sum-exp raised by log 1/0.6,
    and +inf for one head: zero gradients), match `_math_backward` on a probe (once); None where none does.

    Timed rather than taken in order: which kernel is fastest given a foreign output depends on the device and release
    (on an H200 with torch 2.11 the probe keeps cuDNN's, and the gated training runs at 1.04x dense attention's time;
    an earlier 0.46x was measured beside another job on the same GPU).
    """
    q, k, v, grad_out = _probe(device, dtype)
    own_out, own_lse = _math(q.float(), k.float(), v.float())
    noise = torch.randn(own_out.shape, generator=torch.Generator().manual_seed(1)).to(device)
    out = (0.6 * own_out.float() + 0.1 * noise).to(dtype).transpose(1, 2).contiguous().transpose(1, 2)
    lse = (own_lse - torch.log(torch.tensor(0.6))).float()
    lse[:, 1] = float("inf")  # a closed gate's head: every gradient exactly 0
    lse = lse.contiguous()
    want = _math_backward(grad_out.float(), q.float(), k.float(), v.float(), out.float(), lse)
    passing = []
    for kernel in BACKWARD.get(device, []):
        try:
            got = kernel(grad_out, q, k, v, out, lse)
        except (RuntimeError, NotImplementedError, TypeError):
            continue
        if all(_close(a, b, dtype) for a, b in zip(got, want)):
            passing.append(kernel)
    if len(passing) < 2:
        return passing[0] if passing else None
    return min(passing, key=lambda kernel: _seconds(kernel, device, dtype))


TIMING_SHAPE = (1, 4096, 8, 128)  # (B, L, H, d): a training-like size at which backward kernels are compared


def _seconds(kernel: Callable, device: str, dtype: torch.dtype, repeat: int = 3) -> float:
    """Best of `repeat` timings of a backward kernel at TIMING_SHAPE, after one warm-up call; given its own forward's
    output and log-sum-exp (what it is fed does not change its work)."""
    g = torch.Generator(device="cpu").manual_seed(2)
    q, k, v, grad_out = (torch.randn(TIMING_SHAPE, generator=g).to(device, dtype).transpose(1, 2) for _ in range(4))
    out, lse = _forward_kernel(device, dtype)(q, k, v)
    lse = lse.reshape(q.shape[:3]).float().contiguous()
    out = out.transpose(1, 2).contiguous().transpose(1, 2)  # laid out as the merge's output: (B, L, H, d) storage
    best = float("inf")
    for i in range(repeat + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        kernel(grad_out, q, k, v, out, lse)
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # the first call is the warm-up (graph building, autotuning)
            best = min(best, time.perf_counter() - start)
    return best
