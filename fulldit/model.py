"""FullDiT: one video diffusion transformer for any mix of conditions, learned with full self-attention.

The figure, as `FullDiT.forward` runs it: 1. tokenize the noisy latents into video tokens (patchify) and each
condition into a Segment (conditions/) -> 2. one sequence [video | conditions], every token with a 3D rotary
position (sequence.py) -> 3. N blocks of (self-attention over the sequence, cross-attention to the text, FFN),
modulated by the timestep (AdaLN) -> 4. the video tokens -> head -> unpatchify. The video and condition tokens are
held as two tensors, not one: condition tokens are modulated as clean data and, in `isolated`, their keys/values are
cached across denoising steps; the self-attention runs over the concatenation of their keys.

The block layout, parameter names and numerics follow Wan2.1's original release (self_attn/cross_attn
with q,k,v,o and RMS qk-norm across heads, norm1/norm3/norm2, a 6-row modulation table per block,
fp32 timestep embedding and modulation), so a Wan2.1 text-to-video checkpoint maps onto this model
tensor for tensor (issue #6). What FullDiT adds:

- condition tokens in the self-attention sequence, with their own 3D rotary positions (sequence.py);
- timesteps per latent frame (STIV frame replacement: known frames carry t = 0), and condition
  tokens modulated as clean data (t = 0), so they do not depend on the noise level;
- attention variants (`ATTENTION`, one per model.attention and gate (none, or its gate_merge), chosen per block):
  `full` (FullDiT: every token attends to every token) and `isolated` (FullDiT2: video tokens attend to everything,
  each condition only to itself). In `isolated` a condition's keys/values depend neither on the noisy video nor on
  the timestep, so `condition_cache()` computes them once per generation and every denoising step reuses them;
- optionally (`condition_layers`) conditions in a few blocks only: condition tokens pass through, and video
  tokens read them in, the named blocks (FullDiT2), which cuts the attention the conditions cost;
- optionally (`condition_gate`, set for converted Wan2.1 checkpoints) a zero-initialised gate per block
  and head on the weight of the condition keys in the video tokens' softmax, so a pretrained backbone computes
  exactly what it computed before, conditions given or not, and opens into FullDiT's one softmax (gate 1);
  `gate_merge: separate` instead adds a second softmax over the condition keys (adapters' decoupled attention,
  kept for comparison: issue #15).

References: FullDiT (Ju et al. 2025), FullDiT2 (2025), STIV (Lin et al. 2024), Wan2.1 (2025), DiT (Peebles & Xie 2023).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from fulldit.attention import KeyMask, attend, key_mask, save_attention_context
from fulldit.attention_lse import gated_merge
from fulldit.conditions import ConditionInput, Grid, build_conditions
from fulldit.config import ModelConfig
from fulldit.sequence import Packed, grid_positions, pack

if TYPE_CHECKING:
    from fulldit.parallel import SequenceParallel, SequenceShard

TIMESTEP_SCALE = 1000.0  # Wan2.1 embeds t in [0, 1000]; flow time is in [0, 1]
FP32_PARAMS = ("time_embedding", "time_projection", "modulation", "norm1", "norm2", "norm3", "cond_gate")  # kept fp32


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of t (any shape) -> (*t.shape, dim), cos first, as Wan2.1 (float64 -> float32)."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, device=t.device, dtype=torch.float64) / half)
    args = t.double()[..., None] * TIMESTEP_SCALE * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Per-axis rotary dims (t, h, w) of a head, Wan2.1's split: h and w get 2*(d//6) each, t the rest."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_angles(pos: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos, sin (B, L, 1, head_dim/2) for float positions (B, L, 3), computed in float64 for accuracy."""
    angles = []
    for axis, d in enumerate(rope_split(head_dim)):
        inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, device=pos.device, dtype=torch.float64) / d)
        angles.append(pos[..., axis].double()[..., None] * inv_freq)
    a = torch.cat(angles, dim=-1)[:, :, None, :]  # (B, L, 1, head_dim/2)
    return a.cos().float(), a.sin().float()


def apply_rope(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of x (B, L, H, d) by the angles in rope (Wan2.1's layout).

    The products run in fp32 (cos/sin are fp32); the result is stored in x's dtype. No in-place writes, so
    selective activation checkpointing under torch.compile can trace it.
    """
    cos, sin = rope
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)  # (B, L, H, d/2) each, strided views
    dt = x.dtype
    return torch.stack([(x1 * cos - x2 * sin).to(dt), (x1 * sin + x2 * cos).to(dt)], -1).flatten(-2)


def modulate(x: Tensor, norm: nn.Module, shift: Tensor, scale: Tensor) -> Tensor:
    """norm(x) * (1 + scale) + shift in fp32. x (B, N, D); shift/scale (B, G, D) for G equal groups of tokens."""
    g = shift.shape[1]
    if g == 1:  # one table for all tokens: a plain broadcast, which runs vectorised
        return (norm(x.float()) * (1 + scale) + shift).type_as(x)
    y = norm(x.float()).unflatten(1, (g, -1))  # (B, G, N/G, D)
    return (y * (1 + scale[:, :, None]) + shift[:, :, None]).flatten(1, 2).type_as(x)


def gated_residual(x: Tensor, y: Tensor, gate: Tensor) -> Tensor:
    """x + y * gate, accumulated in fp32 (gate is fp32, so type promotion does it without extra copies).

    x, y (B, N, D); gate (B, G, D) for G equal groups of tokens.
    """
    g = gate.shape[1]
    if g == 1:
        return (x + y * gate).type_as(x)
    return (x + (y.unflatten(1, (g, -1)) * gate[:, :, None]).flatten(1, 2)).type_as(x)


class Attention(nn.Module):
    """Multi-head attention projections with RMS qk-norm across heads (Wan2.1: q, k, v, o, norm_q, norm_k)."""

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)

    def qkv(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, ...]:
        """Queries, keys, values (B, L, H, d) of the tokens x (B, L, D), rotated by their positions."""
        q = self.norm_q(self.q(x)).unflatten(-1, (self.heads, -1))
        k = self.norm_k(self.k(x)).unflatten(-1, (self.heads, -1))
        v = self.v(x).unflatten(-1, (self.heads, -1))
        return apply_rope(q, rope), apply_rope(k, rope), v

    def query(self, x: Tensor) -> Tensor:
        """Cross-attention queries (B, L, H, d) of x (B, L, D)."""
        return self.norm_q(self.q(x)).unflatten(-1, (self.heads, -1))

    def text(self, q: Tensor, context: Tensor, context_mask: KeyMask | None) -> Tensor:
        """Cross-attention of the queries q (B, L, H, d) to the text context (B, Lt, D) -> (B, L, H*d), before `o`."""
        k = self.norm_k(self.k(context)).unflatten(-1, (self.heads, -1))
        v = self.v(context).unflatten(-1, (self.heads, -1))
        return attend(q, k, v, context_mask).flatten(-2)


@dataclass
class StepInputs:
    """What every block needs besides the tokens: modulation, positions, text, where each condition sits."""

    mod_video: Tensor  # (B, G, 6, D) fp32 time embedding per token-frame group (G = 1 when all times agree)
    mod_cond: Tensor  # (B, 1, 6, D) fp32 time embedding of clean data (t = 0)
    rope_video: tuple[Tensor, Tensor]
    rope_cond: tuple[Tensor, Tensor] | None
    context: Tensor  # (B, Lt, D)
    context_mask: KeyMask | None  # (B, Lt) real text tokens
    cond_mask: Tensor | None  # (B, Lc) or None when all condition tokens are real
    cond_bounds: list[tuple[int, int]]
    # The key masks the blocks use, each found once per forward (attention.KeyMask), None where all keys are real:
    sequence_keys: KeyMask | None = None  # (B, Nv + Lc): the real keys of the whole sequence
    cond_keys: KeyMask | None = None  # (B, Lc): the real condition keys (gated variants)
    # per condition segment, with one key kept in rows that have none (isolated variants; see step_inputs)
    segment_keys: list[KeyMask | None] | None = None
    parallel: SequenceShard | None = None  # sequence-parallel: this rank's share of the tokens (parallel.py)


# -- The self-attention over the sequence [video | conditions], in six variants (`ATTENTION`) ----------------------
# One signature: the block (its gate), queries/keys/values (B, N, H, d) of the video (qv, kv, vv) and of the conditions
# (qc, kc, vc), step inputs (key masks, segment bounds) -> outputs (B, Nv, H*d), (B, Nc, H*d). The keys of the sequence
# are the two streams' concatenated. qc None (no later block reads the conditions, or a cache): the video's output only.
# The gated variants take how the video's attention merges in the conditions': (gate (H,), qv, kv, vv, kc, vc,
# condition key mask) -> (B, Nv, H*d) (`gated_video_attention`, `separate_video_attention`; model.gate_merge).
VideoMerge = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, KeyMask | None], Tensor]


def full_attention(
    block: Block, qv: Tensor, kv: Tensor, vv: Tensor, qc: Tensor | None, kc: Tensor, vc: Tensor, s: StepInputs
) -> tuple[Tensor, Tensor | None]:
    """FullDiT (`attention: full`): one softmax over the whole sequence [video | conditions] for every token."""
    k, v = torch.cat([kv, kc], 1), torch.cat([vv, vc], 1)  # (B, Nv + Nc, H, d)
    if qc is None:
        return attend(qv, k, v, s.sequence_keys).flatten(-2), None
    out = attend(torch.cat([qv, qc], 1), k, v, s.sequence_keys).flatten(-2)  # (B, Nv + Nc, H*d), one call
    return out[:, : qv.shape[1]], out[:, qv.shape[1] :]


def isolated_attention(
    block: Block, qv: Tensor, kv: Tensor, vv: Tensor, qc: Tensor | None, kc: Tensor, vc: Tensor, s: StepInputs
) -> tuple[Tensor, Tensor | None]:
    """FullDiT2's decoupled mask (`attention: isolated`): video tokens attend to the whole sequence, each condition
    only to itself, so its keys/values see neither the noisy video nor t (`FullDiT.condition_cache` keeps them)."""
    k, v = torch.cat([kv, kc], 1), torch.cat([vv, vc], 1)  # (B, Nv + Nc, H, d)
    out_v = attend(qv, k, v, s.sequence_keys).flatten(-2)  # (B, Nv, H*d)
    return out_v, None if qc is None else each_condition_alone(qc, kc, vc, s)


def gated_attention(
    block: Block,
    qv: Tensor,
    kv: Tensor,
    vv: Tensor,
    qc: Tensor | None,
    kc: Tensor,
    vc: Tensor,
    s: StepInputs,
    merge: VideoMerge,
    isolated: bool,
) -> tuple[Tensor, Tensor | None]:
    """`condition_gate` (converted Wan2.1 backbones): the video reads the conditions through the gate (`merge`:
    gate 0 is the backbone; `gated_video_attention` at gate 1 is `full_attention`); the conditions read the whole
    sequence (`full`) or each only itself (`isolated`)."""
    out_v = merge(block.gate(), qv, kv, vv, kc, vc, s.cond_keys)  # (B, Nv, H*d)
    if qc is None:
        return out_v, None
    if isolated:
        return out_v, each_condition_alone(qc, kc, vc, s)
    k, v = torch.cat([kv, kc], 1), torch.cat([vv, vc], 1)  # (B, Nv + Nc, H, d)
    return out_v, attend(qc, k, v, s.sequence_keys).flatten(-2)


def gated_video_attention(
    gate: Tensor, qv: Tensor, kv: Tensor, vv: Tensor, kc: Tensor, vc: Tensor, cond_keys: KeyMask | None
) -> Tensor:
    """Video queries over video and condition keys: one softmax in which the condition keys weigh `gate` (H,).

    Two dense attentions (video keys, condition keys) merged by their log-sum-exps Z = exp(lse):
    out = (Z_v O_v + g Z_c O_c) / (Z_v + g Z_c). At g = 0 this is the backbone's self-attention, conditions
    given or not (one shared softmax would take attention mass from the video keys at once); at g = 1 it is
    FullDiT's one softmax over [video, conditions]. Its backward runs full attention's fused kernels (`gated_merge`).
    """
    return gated_merge(gate, qv, kv, vv, kc, vc, cond_keys).flatten(-2)  # (B, Nv, H*d)


def separate_video_attention(
    gate: Tensor, qv: Tensor, kv: Tensor, vv: Tensor, kc: Tensor, vc: Tensor, cond_keys: KeyMask | None
) -> Tensor:
    """Video queries over the video keys, plus `gate` (H,) times a second softmax over the condition keys.

    out = O_v + g O_c: the decoupled attention of adapters (IP-Adapter, LLaMA-Adapter), kept only to compare with
    `gated_video_attention` (`model.gate_merge: separate`, issue #15). At g = 0 it is exactly the backbone; at no g
    is it one softmax over [video, conditions] (the video keys never cede attention mass), hence the LSE merge.
    """
    o_v = attend(qv, kv, vv, None)  # (B, Nv, H, d)
    o_c = attend(qv, kc, vc, cond_keys)  # rows without a real condition key: zeros, so they add nothing
    return (o_v + gate[:, None] * o_c.float()).type_as(o_v).flatten(-2)  # (B, Nv, H*d)


ATTENTION = {  # (model.attention, model.gate_merge, or None without condition_gate) -> the blocks' attention variant
    ("full", None): full_attention,
    ("isolated", None): isolated_attention,
    ("full", "lse"): partial(gated_attention, merge=gated_video_attention, isolated=False),
    ("isolated", "lse"): partial(gated_attention, merge=gated_video_attention, isolated=True),
    ("full", "separate"): partial(gated_attention, merge=separate_video_attention, isolated=False),
    ("isolated", "separate"): partial(gated_attention, merge=separate_video_attention, isolated=True),
}


def each_condition_alone(qc: Tensor, kc: Tensor, vc: Tensor, s: StepInputs) -> Tensor:
    """Each condition's tokens attend only to the tokens of the same condition (FullDiT2's decoupled mask)."""
    keys = s.segment_keys or [None] * len(s.cond_bounds)
    outs = [attend(qc[:, a:b], kc[:, a:b], vc[:, a:b], m) for (a, b), m in zip(s.cond_bounds, keys)]
    return torch.cat(outs, 1).flatten(-2)  # (B, Nc, H*d)


class Block(nn.Module):
    """Self-attention over [video | conditions], cross-attention to text, FFN; AdaLN modulation (Wan2.1 layout).

    attention, condition_gate, gate_merge: the attention variant this block runs (`ATTENTION`), fixed at construction.
    The gate (`condition_gate`, one weight per head, zero at init) lets a pretrained backbone compute exactly what it
    computed before, conditions given or not; training opens it into FullDiT's one softmax (gate_merge lse).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn_dim: int,
        eps: float,
        attention: str = "full",
        condition_gate: bool = False,
        gate_merge: str = "lse",
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.self_attn = Attention(dim, heads, eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)  # Wan2.1 names the cross-attn norm norm3
        self.cross_attn = Attention(dim, heads, eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))
        self.cond_gate = nn.Parameter(torch.zeros(heads)) if condition_gate else None
        self.attention_variant = ATTENTION[attention, gate_merge if condition_gate else None]  # once, not per call
        self.reads_conditions = True  # False: condition tokens skip this block (model.condition_layers)
        self.checkpointing = "none"  # training: "full" recomputes the block in backward, "selective" all but attention

    def _mod(self, e: Tensor) -> list[Tensor]:
        """Six (B, G, D) tables: shift, scale, gate of attention; shift, scale, gate of the FFN."""
        return list((self.modulation + e).unbind(2))  # e: (B, G, 6, D)

    def _tail(self, x: Tensor, attn_out: Tensor, mod: list[Tensor], s: StepInputs) -> Tensor:
        """Residual of self-attention, then text cross-attention and the FFN, for one stream of tokens."""
        _, _, gate, c_shift, c_scale, c_gate = mod
        x, q = self.attention_residual(x, own_tensor(attn_out), gate)
        text = own_tensor(self.cross_attn.text(q, s.context, s.context_mask))
        return self.ffn_residual(x, text, c_shift, c_scale, c_gate)

    # The three dense stretches of a block: plain tensors in and out, no masks or condition layout, so that
    # `FullDiT.compile_blocks` compiles each once (dynamic shapes) for every mix of conditions.
    def project(
        self, x: Tensor, shift: Tensor, scale: Tensor, cos: Tensor, sin: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention q, k, v (B, L, H, d) of tokens x (B, L, D): modulated norm, projections, qk-norm, rotary."""
        return self.self_attn.qkv(modulate(x, self.norm1, shift, scale), (cos, sin))

    def attention_residual(self, x: Tensor, attn_out: Tensor, gate: Tensor) -> tuple[Tensor, Tensor]:
        """x + gate * o(attn_out) (B, L, D), and the text cross-attention's queries (B, L, H, d) of the result."""
        x = gated_residual(x, self.self_attn.o(attn_out), gate)
        return x, self.cross_attn.query(self.norm3(x.float()).type_as(x))

    def ffn_residual(self, x: Tensor, text: Tensor, shift: Tensor, scale: Tensor, gate: Tensor) -> Tensor:
        """x + o(text cross-attention), then the gated FFN residual (B, L, D)."""
        x = x + self.cross_attn.o(text)
        return gated_residual(x, self.ffn(modulate(x, self.norm2, shift, scale)), gate)

    def cond_qkv(self, xc: Tensor, s: StepInputs) -> tuple[list[Tensor], tuple[Tensor, ...]]:
        mod_c = self._mod(s.mod_cond)
        return mod_c, self.project(xc, mod_c[0], mod_c[1], *s.rope_cond)

    def forward(
        self,
        xv: Tensor,
        xc: Tensor | None,
        s: StepInputs,
        cached_kv: tuple[Tensor, Tensor] | None = None,
        keep_conditions: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Update the video tokens xv (B, Nv, D) and condition tokens xc (B, Nc, D) or None.

        keep_conditions=False: the condition tokens' own update is skipped (no later block reads them).
        """
        args = (xv, xc, s, cached_kv, keep_conditions)
        if self.checkpointing == "none" or not torch.is_grad_enabled():
            return self._forward(*args)
        if self.checkpointing == "selective":
            return checkpoint(self._forward, *args, use_reentrant=False, context_fn=save_attention_context)
        return checkpoint(self._forward, *args, use_reentrant=False)

    def _forward(
        self,
        xv: Tensor,
        xc: Tensor | None,
        s: StepInputs,
        cached_kv: tuple[Tensor, Tensor] | None,
        keep_conditions: bool,
    ) -> tuple[Tensor, Tensor | None]:
        # 1. Queries, keys, values of the video tokens (per-frame modulation) and condition tokens (t = 0).
        mod_v = self._mod(s.mod_video)
        qv, kv, vv = self.project(xv, mod_v[0], mod_v[1], *s.rope_video)  # (B, Nv, H, d)
        if cached_kv is not None:  # isolated: condition keys/values computed once per generation (condition_cache)
            kc, vc = cached_kv
            qc, mod_c = None, None
        elif xc is not None:
            mod_c, (qc, kc, vc) = self.cond_qkv(xc, s)  # (B, Nc, H, d)
        else:
            kc = vc = qc = mod_c = None
        if not keep_conditions:
            qc = None

        # 2. Self-attention over the sequence [video | conditions]: this block's variant (ATTENTION).
        if s.parallel is not None:  # sequence-parallel: the heads are split over the ranks around it (parallel.py)
            out_v, out_c = s.parallel.attention(self, qv, kv, vv, qc, kc, vc, s)
        elif kc is None:  # no condition token in this block: the sequence is the video alone
            out_v, out_c = attend(qv, kv, vv, None).flatten(-2), None
        else:
            out_v, out_c = self.attention(qv, kv, vv, qc, kc, vc, s)

        # 3. Residuals, text cross-attention and FFN for each stream.
        xv = self._tail(xv, out_v, mod_v, s)
        xc = None if out_c is None else self._tail(xc, out_c, mod_c, s)
        return xv, xc

    def attention(
        self, qv: Tensor, kv: Tensor, vv: Tensor, qc: Tensor | None, kc: Tensor, vc: Tensor, s: StepInputs
    ) -> tuple[Tensor, Tensor | None]:
        """This block's attention variant over [video | conditions]: outputs (B, Nv, H*d) and (B, Nc, H*d) or None."""
        return self.attention_variant(self, qv, kv, vv, qc, kc, vc, s)

    def gate(self) -> Tensor:
        """The condition gate per head, clamped to [0, 1]; its gradient passes the clamp (straight-through), so a
        gate pushed below 0 by one step can reopen."""
        g = self.cond_gate.float()
        return g + (g.clamp(0.0, 1.0) - g).detach()

    def condition_kv(self, xc: Tensor, s: StepInputs, update: bool) -> tuple[tuple[Tensor, Tensor], Tensor | None]:
        """Isolated layout: this block's condition keys/values (to cache) and, if `update`, the tokens after it.

        Sequence-parallel, the keys/values kept are this rank's heads of every condition token.
        """
        mod_c, (qc, kc, vc) = self.cond_qkv(xc, s)
        if s.parallel is not None:
            qc, kc, vc = s.parallel.to_heads(s.parallel.cond, qc, kc, vc)
        if not update:
            return (kc, vc), None
        out = each_condition_alone(qc, kc, vc, s)
        if s.parallel is not None:
            out = s.parallel.to_sequence(s.parallel.cond, out)
        return (kc, vc), self._tail(xc, out, mod_c, s)


def own_tensor(x: Tensor) -> Tensor:
    """x itself if it is a contiguous tensor of its own, else a contiguous copy.

    Attention outputs are views of several layouts (slices, transposes, masked groups); torch.compile guards on a
    view's base, so each layout would be one more graph of the compiled block stretches that read them.
    """
    return x if x._base is None and x.is_contiguous() else x.clone(memory_format=torch.contiguous_format)


def with_a_key(mask: Tensor) -> Tensor:
    """mask (B, L) with key 0 turned on in rows that have no key at all (no in-place write: compile-friendly)."""
    first = torch.arange(mask.shape[1], device=mask.device) == 0
    return mask | (~mask.any(1, keepdim=True) & first)


def init_linears(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every linear in `module` (Wan2.1's default initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class Head(nn.Module):
    """Final AdaLN (shift, scale per latent frame) and linear projection to patch values (Wan2.1 layout)."""

    def __init__(self, dim: int, out_features: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_features)
        self.modulation = nn.Parameter(torch.zeros(1, 2, dim))

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        shift, scale = (self.modulation + e[:, :, None]).unbind(2)  # (B, G, D) each, e: (B, G, D)
        return self.head(modulate(x, self.norm, shift, scale))


class FullDiT(nn.Module):
    """The FullDiT transformer: predicts the flow velocity (or clean sample) of noisy video latents."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        pt, ph, pw = cfg.patch
        d = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_channels, d, kernel_size=cfg.patch, stride=cfg.patch)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.conditions = build_conditions(cfg)
        self.blocks = nn.ModuleList(
            [
                Block(d, cfg.heads, cfg.ffn_dim, cfg.eps, cfg.attention, cfg.condition_gate, cfg.gate_merge)
                for _ in range(cfg.layers)
            ]
        )
        self.head = Head(d, cfg.in_channels * pt * ph * pw, cfg.eps)
        for i, block in enumerate(self.blocks):
            block.reads_conditions = cfg.reads_conditions(i)
        self.init_weights()

    @property
    def gradient_checkpointing(self) -> str:
        """Activation checkpointing of every block in training: "none", "full" or "selective" (keeps attention)."""
        return self.blocks[0].checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, mode: bool | str) -> None:
        if isinstance(mode, bool):
            mode = "full" if mode else "none"
        if mode not in ("none", "full", "selective"):
            raise ValueError(f"activation checkpointing must be none, full or selective, not {mode!r}")
        for block in self.blocks:
            block.checkpointing = mode

    def compile_blocks(self, **kwargs) -> FullDiT:
        """torch.compile each block's dense stretches in place (regional compilation, one graph for every block).

        Fuses the elementwise work around the matmuls (norms, modulation, rotary, gated residuals); attention and
        the condition layout stay eager, so no mix of conditions, mask or token count recompiles after the first
        of each kind (shapes are dynamic). State-dict names are unchanged. kwargs go to torch.compile
        (e.g. mode="max-autotune-no-cudagraphs").
        """
        kwargs.setdefault("dynamic", True)
        for block in self.blocks:
            for name in ("project", "attention_residual", "ffn_residual"):
                setattr(block, name, torch.compile(getattr(block, name), **kwargs))
        return self

    def init_weights(self) -> None:
        """Wan2.1's initialisation with DiT's adaLN-Zero: every block and the head start as the identity / zero."""
        init_linears(self)  # Wan2.1: xavier for every linear
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))  # as a linear on flattened patches
        nn.init.zeros_(self.patch_embedding.bias)
        for seq in (self.text_embedding, self.time_embedding):  # Wan2.1: small normal for the embedders
            for m in seq:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.time_projection[1].weight)  # adaLN-Zero: no shift/scale/gate from t at init,
        nn.init.zeros_(self.time_projection[1].bias)
        for block in self.blocks:  # and zero gates, so each block is the identity at init
            nn.init.zeros_(block.modulation)
            if block.cond_gate is not None:  # conditions act only once trained
                nn.init.zeros_(block.cond_gate)
        nn.init.zeros_(self.head.modulation)  # the output starts at exactly zero
        nn.init.zeros_(self.head.head.weight)
        nn.init.zeros_(self.head.head.bias)

    def to_dtype(self, dtype: torch.dtype) -> FullDiT:
        """Cast to `dtype` but keep timestep embedding, modulation and norms in fp32 (Wan2.1/diffusers practice)."""
        for name, p in self.named_parameters():
            p.data = p.data.float() if any(k in name for k in FP32_PARAMS) else p.data.to(dtype)
        return self

    def grid(self, latents_shape: torch.Size) -> Grid:
        """The patchified token grid of latents (B, C, T, H, W)."""
        _, _, t, h, w = latents_shape
        pt, ph, pw = self.cfg.patch
        return Grid(t // pt, h // ph, w // pw, self.cfg.patch)

    def embed_conditions(self, conditions: dict[str, ConditionInput] | None, grid: Grid) -> Packed | None:
        """Tokenize each condition with its own module and pack them into one segment list."""
        unknown = set(conditions or {}) - set(self.conditions)
        if unknown:
            raise ValueError(
                f"conditions {sorted(unknown)} are not part of this model (it has {list(self.conditions)})"
            )
        segments = [self.conditions[name](inp, grid) for name, inp in (conditions or {}).items()]
        return pack(segments)

    def step_inputs(
        self,
        t: Tensor,
        grid: Grid,
        context: Tensor,
        context_mask: Tensor | None,
        packed: Packed | None,
        cond_rope: bool = True,
    ) -> tuple[StepInputs, Tensor]:
        """Timestep modulation, rotary angles and text projection shared by all blocks.

        cond_rope=False skips the conditions' rotary angles: with a condition cache their keys are already rotated.
        """
        b, device = context.shape[0], context.device
        if t.ndim == 1:
            t = t[:, None].expand(b, grid.t * grid.patch[0])
        # per-frame timesteps: a token frame spanning several latent frames takes the noisiest one
        t_tok = t.float().unflatten(1, (grid.t, -1)).amax(-1)  # (B, T)
        if bool((t_tok == t_tok[:, :1]).all()):  # one time for every frame: one modulation table (faster)
            t_tok = t_tok[:, :1]
        zero = torch.zeros(b, 1, device=device)
        with torch.autocast(device.type, enabled=False):
            e = self.time_embedding(timestep_embedding(torch.cat([t_tok, zero], 1), self.cfg.freq_dim))  # (B, T+1, D)
            e6 = self.time_projection(e).unflatten(-1, (6, -1))  # (B, T+1, 6, D)
        pos_v = grid_positions(grid.t, grid.h, grid.w, device)[None]  # (1, Nv, 3): the same grid for every sample
        hd, theta = self.cfg.head_dim, self.cfg.rope_theta
        cond_mask = None if packed is None else packed.mask
        inputs = StepInputs(
            mod_video=e6[:, :-1],
            mod_cond=e6[:, -1:],
            rope_video=rope_angles(pos_v, hd, theta),
            rope_cond=None if packed is None or not cond_rope else rope_angles(packed.pos, hd, theta),
            context=self.text_embedding(context.to(self.text_embedding[0].weight.dtype)),
            context_mask=key_mask(context_mask),
            cond_mask=cond_mask,
            cond_bounds=[] if packed is None else packed.bounds,
        )
        if cond_mask is not None:  # the key masks the blocks' attention variant reads (ATTENTION)
            # isolated: rows without a real key (a sample lacking a condition) see one padding key instead of none,
            # so no NaN arises that could leak into gradients; their output is unused
            gated, isolated = self.cfg.condition_gate, self.cfg.attention == "isolated"
            if not (gated and isolated):
                inputs.sequence_keys = key_mask(F.pad(cond_mask, (grid.tokens, 0), value=True))
            if gated:
                inputs.cond_keys = key_mask(cond_mask)
            if isolated:
                inputs.segment_keys = [key_mask(with_a_key(cond_mask[:, a:b])) for a, b in packed.bounds]
        return inputs, e[:, :-1]

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        context: Tensor,
        context_mask: Tensor | None = None,
        conditions: dict[str, ConditionInput] | None = None,
        cache: ConditionCache | None = None,
        parallel: SequenceParallel | None = None,
    ) -> Tensor:
        """Predict for noisy latents x (B, C, T, H, W) at flow time t (B,) or per latent frame (B, T): FullDiT's figure.

        context (B, Lt, text_dim) are text-encoder features, context_mask (B, Lt) marks real ones.
        `conditions` maps condition names to their inputs; `cache` (isolated layout) replaces them.
        `parallel`: the blocks run on this rank's share of the tokens, the prediction is gathered (parallel.py).
        """
        grid = self.grid(x.shape)
        pt, ph, pw = self.cfg.patch
        # 1. Tokenize: the noisy latents into video tokens (patches), each condition into its segment (conditions/).
        xv = rearrange(self.patch_embedding(x.to(self.patch_embedding.weight.dtype)), "b d t h w -> b (t h w) d")
        xv = xv.contiguous()  # (B, Nv, D), the layout every block's output has (one compiled graph for all)
        packed = cache.packed if cache is not None else self.embed_conditions(conditions, grid)  # (B, Nc, D) tokens
        # 2. One sequence [video | conditions]: 3D positions (the video grid, each segment's own), key masks, timestep
        # modulation (conditions as clean data, t = 0). Its two parts stay two tensors, xv and xc: condition tokens are
        # modulated apart and, in `isolated`, their keys/values come from a cache; the attention runs over [xv | xc].
        s, e = self.step_inputs(t, grid, context, context_mask, packed, cond_rope=cache is None)
        xc = None if cache is not None or packed is None else packed.tokens.to(xv.dtype)  # (B, Nc, D)
        if parallel is not None:
            xv, xc, s = parallel.shard(xv, xc, s, grid, cached=cache is not None)
        # 3. The blocks: self-attention over the sequence (Block.attention_variant), text cross-attention, FFN.
        # Condition tokens pass only through the blocks that read them (model.condition_layers), not past the last.
        last = self.last_condition_block()
        for i, block in enumerate(self.blocks):
            if not block.reads_conditions:
                xv, _ = block(xv, None, s)  # (B, Nv, D)
            elif cache is not None:
                xv, _ = block(xv, None, s, cache.kv[i])  # (B, Nv, D)
            else:
                xv, xc_out = block(xv, xc, s, None, i < last)  # (B, Nv, D), (B, Nc, D)
                xc = xc_out if i < last else None
        # 4. The video tokens (the sequence's first Nv) -> patch values -> latents.
        out = self.head(xv, e)  # (B, Nv, pt*ph*pw*C)
        if s.parallel is not None:
            out = s.parallel.gather(out)
        return rearrange(
            out.float(), "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=grid.t, h=grid.h, pt=pt, ph=ph, pw=pw
        )

    @torch.no_grad()
    def condition_cache(
        self,
        conditions: dict[str, ConditionInput],
        grid: Grid,
        context: Tensor,
        context_mask: Tensor | None = None,
        parallel: SequenceParallel | None = None,
    ) -> ConditionCache | None:
        """Run the condition tokens through all blocks once and keep each block's keys/values.

        Only valid in the `isolated` layout, where condition tokens never see the video or the timestep.
        `parallel`: each rank runs its share of the tokens and keeps its heads of the keys/values (parallel.py).
        """
        if self.cfg.attention != "isolated":
            raise ValueError("condition caching needs model.attention = 'isolated'")
        packed = self.embed_conditions(conditions, grid)
        if packed is None:
            return None
        # Only the samples with a real condition token run the blocks (a guidance branch without conditions has all
        # its condition keys masked, so its keys/values are never read: it borrows a live sample's).
        has = None if packed.mask is None else packed.mask.any(1)  # (B,): the samples with a real condition token
        some_dead = has is not None and not bool(has.all())
        live_packed = packed
        if some_dead:
            live = has.nonzero()[:, 0]
            context, context_mask = context[live], None if context_mask is None else context_mask[live]
            live_packed = packed.rows(live)
        t = torch.zeros(context.shape[0], grid.t * grid.patch[0], device=context.device)
        s, _ = self.step_inputs(t, grid, context, context_mask, live_packed)
        xc, kv = live_packed.tokens.to(self.patch_embedding.weight.dtype), []
        if parallel is not None:
            _, xc, s = parallel.shard(None, xc, s, grid, cached=False)
        last = self.last_condition_block()
        for i, block in enumerate(self.blocks):
            if not block.reads_conditions:
                kv.append(None)
                continue
            kv_i, xc = block.condition_kv(xc, s, update=i < last)
            kv.append(kv_i)
        if not some_dead:
            return ConditionCache(packed=packed, kv=kv)
        borrow = (has.cumsum(0) - 1).clamp_min(0)  # each sample -> its own live row, or a live row before it
        return ConditionCache(packed=packed, kv=ConditionCache(live_packed, kv).rows(borrow).kv)

    def last_condition_block(self) -> int:
        """Index of the last block that reads condition tokens."""
        return max(i for i, b in enumerate(self.blocks) if b.reads_conditions)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class ConditionCache:
    """Per-block condition keys/values (isolated layout), reused at every denoising step of one generation."""

    packed: Packed
    kv: list[tuple[Tensor, Tensor] | None]  # None for blocks that do not read conditions

    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in filter(None, self.kv))

    def rows(self, index: Tensor) -> ConditionCache:
        """The cache of the samples `index` (1-D) of the batch, in that order (e.g. one guidance branch)."""
        kv = [None if kv_i is None else (kv_i[0][index], kv_i[1][index]) for kv_i in self.kv]
        return ConditionCache(packed=self.packed.rows(index), kv=kv)
