"""The transformer: shapes, adaLN-Zero, rotary positions, the figure written out, condition effects, padding, cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from fulldit.conditions import ConditionInput
from fulldit.config import CameraConfig
from fulldit.model import Attention, FullDiT, apply_rope, rope_angles, rope_split, timestep_embedding
from tests.conftest import randomize, tiny_model_config

B, C, T, H, W = 2, 12, 4, 8, 8


def inputs(seed: int = 0, b: int = B) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, C, T, H, W, generator=g), torch.rand(b, generator=g), torch.randn(b, 5, 16, generator=g)


def conditions(seed: int = 1, b: int = B, plucker: bool = False) -> dict[str, ConditionInput]:
    g = torch.Generator().manual_seed(seed)
    yes = torch.ones(b, dtype=torch.bool)
    cam = torch.randn(b, T, 4, 4, 6, generator=g) if plucker else torch.randn(b, T, 16, generator=g)
    return {
        "camera": ConditionInput(cam, yes),
        "reference": ConditionInput(torch.randn(b, 2, C, H, W, generator=g), torch.ones(b, 2, dtype=torch.bool)),
        "depth": ConditionInput(torch.randn(b, C, T, H, W, generator=g), yes),
    }


def model(attention: str = "full", **kw) -> FullDiT:
    torch.manual_seed(0)
    return randomize(FullDiT(tiny_model_config(attention=attention, **kw))).eval()


def test_output_shape_and_adaln_zero_init() -> None:
    m = FullDiT(tiny_model_config())
    x, t, ctx = inputs()
    out = m(x, t, ctx, None, conditions())
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # adaLN-Zero: the head and every gate start at zero


def test_rope_split_matches_wan() -> None:
    assert rope_split(128) == (44, 42, 42)
    assert sum(rope_split(64)) == 64 and all(d % 2 == 0 for d in rope_split(64))


def test_rope_is_relative() -> None:
    """q.k after rotation depends only on the position difference, on every axis."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 64, generator=g), torch.randn(1, 1, 1, 64, generator=g)
    d = 64

    def score(pq: list[float], pk: list[float]) -> float:
        rq = apply_rope(q, rope_angles(torch.tensor([[pq]]), d, 10000.0))
        rk = apply_rope(k, rope_angles(torch.tensor([[pk]]), d, 10000.0))
        return float((rq * rk).sum())

    assert score([1, 2, 3], [4, 6, 8]) == pytest.approx(score([11, -3, 0], [14, 1, 5]), abs=1e-4)
    assert score([0, 0, 0], [0, 0, 1]) != pytest.approx(score([0, 0, 0], [0, 0, 2]), abs=1e-4)
    rq = apply_rope(q, rope_angles(torch.tensor([[[3.0, -2.0, 5.5]]]), d, 10000.0))
    assert float(rq.norm()) == pytest.approx(float(q.norm()), rel=1e-5)  # a rotation


@pytest.mark.parametrize("attention", ["full", "isolated"])
@pytest.mark.parametrize("name", ["camera", "reference", "depth", "camera-plucker"])
def test_each_condition_changes_the_output(attention: str, name: str) -> None:
    plucker = name == "camera-plucker"
    m = model(attention, camera=CameraConfig(mode="plucker" if plucker else "tokens", frames_per_token=1))
    x, t, ctx = inputs()
    cond = {name.split("-")[0]: conditions(plucker=plucker)[name.split("-")[0]]}
    base = m(x, t, ctx)
    with_cond = m(x, t, ctx, None, cond)
    other = {k: ConditionInput(v.value.flip(0) + 1, v.present) for k, v in cond.items()}
    assert (with_cond - base).abs().mean() > 1e-3 * base.abs().mean()
    assert (m(x, t, ctx, None, other) - with_cond).abs().mean() > 1e-3 * base.abs().mean()  # the value matters too


@pytest.mark.parametrize("attention", ["full", "isolated"])
def test_absent_condition_equals_no_condition(attention: str) -> None:
    """present=False masks a condition out: same output as not passing it (never zeros to ignore)."""
    m = model(attention)
    x, t, ctx = inputs()
    cond = conditions()
    absent = {k: ConditionInput(v.value, torch.zeros_like(v.present)) for k, v in cond.items()}
    torch.testing.assert_close(m(x, t, ctx, None, absent), m(x, t, ctx), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["full", "isolated"])
def test_padding_does_not_change_outputs(attention: str) -> None:
    """Sample 0 with 1 reference and no depth, batched with a sample that has 2 references and depth."""
    m = model(attention)
    x, t, ctx = inputs()
    cond = conditions()
    alone = {
        "camera": ConditionInput(cond["camera"].value[:1], cond["camera"].present[:1]),
        "reference": ConditionInput(cond["reference"].value[:1, :1], torch.ones(1, 1, dtype=torch.bool)),
    }
    out_alone = m(x[:1], t[:1], ctx[:1], None, alone)
    ref_present = torch.tensor([[True, False], [True, True]])
    padded = {
        "camera": cond["camera"],
        "reference": ConditionInput(cond["reference"].value, ref_present),
        "depth": ConditionInput(cond["depth"].value, torch.tensor([False, True])),
    }
    out_batch = m(x, t, ctx, None, padded)
    torch.testing.assert_close(out_batch[:1], out_alone, atol=1e-5, rtol=1e-4)
    # text padding too: extra masked context tokens leave the output unchanged
    ctx_pad = torch.cat([ctx[:1], torch.randn(1, 3, 16)], 1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    torch.testing.assert_close(m(x[:1], t[:1], ctx_pad, mask, alone), out_alone, atol=1e-5, rtol=1e-4)


def test_padding_rows_stay_finite_and_gradients_clean() -> None:
    """A sample without a condition must not produce NaN anywhere (forward or backward)."""
    m = model("isolated")
    m.train()
    x, t, ctx = inputs()
    cond = conditions()
    cond["depth"] = ConditionInput(cond["depth"].value, torch.tensor([True, False]))
    cond["reference"] = ConditionInput(cond["reference"].value, torch.tensor([[False, False], [True, False]]))
    m(x, t, ctx, None, cond).square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def figure_written_out(m: FullDiT, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, cond: dict) -> torch.Tensor:
    """`attention: full` as FullDiT's figure, in plain code on the model's weights: tokens -> ONE sequence
    [video | conditions] -> blocks with one softmax over all of it -> slice the video tokens -> head -> unpatchify."""
    grid, heads, d = m.grid(x.shape), m.cfg.heads, m.cfg.head_dim
    video = rearrange(m.patch_embedding(x), "b d t h w -> b (t h w) d")  # (B, Nv, D)
    packed = m.embed_conditions(cond, grid)  # each condition's tokens (B, Nc, D), positions, mask
    nv, nc = video.shape[1], packed.length
    seq = torch.cat([video, packed.tokens], 1)  # (B, Nv + Nc, D): the one sequence
    real = F.pad(packed.mask, (nv, 0), value=True)  # (B, Nv + Nc): padding condition tokens are no keys
    grid_pos = torch.stack(torch.meshgrid(*(torch.arange(n) for n in (grid.t, grid.h, grid.w)), indexing="ij"), -1)
    pos = torch.cat([grid_pos.reshape(1, nv, 3).expand(len(x), -1, -1), packed.pos], 1).double()  # (B, N, 3)
    dims = (d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6))  # Wan2.1's rotary split of a head over (t, h, w)
    freqs = [pos[..., i, None] / m.cfg.rope_theta ** (torch.arange(0, n, 2).double() / n) for i, n in enumerate(dims)]
    rot = torch.polar(torch.ones(1).double(), torch.cat(freqs, -1)).to(torch.complex64)[:, :, None]  # (B, N, 1, d/2)
    e = m.time_embedding(timestep_embedding(torch.stack([t, 0 * t], 1), m.cfg.freq_dim))  # (B, 2, D): t; clean
    e6 = m.time_projection(e).unflatten(-1, (6, -1))  # (B, 2, 6, D)
    e6 = torch.cat([e6[:, :1].expand(-1, nv, -1, -1), e6[:, 1:].expand(-1, nc, -1, -1)], 1)  # (B, N, 6, D)
    text = m.text_embedding(ctx)  # (B, Lt, D)

    def rope(z: torch.Tensor) -> torch.Tensor:  # rotate the pairs (z[2i], z[2i+1]) of (B, N, H, d) as complex numbers
        return torch.view_as_real(torch.view_as_complex(z.unflatten(-1, (-1, 2))) * rot).flatten(-2)

    def attention(a: Attention, xq: torch.Tensor, xk: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention over the sequence (keys: its real tokens) or, keys None, cross-attention to the text."""
        q, k, v = (z.unflatten(-1, (heads, -1)) for z in (a.norm_q(a.q(xq)), a.norm_k(a.k(xk)), a.v(xk)))
        if keys is not None:
            q, k, keys = rope(q), rope(k), keys[:, None, None, :]
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=keys)
        return a.o(out.transpose(1, 2).flatten(2))  # (B, Lq, D)

    for block in m.blocks:
        shift, scale, gate, c_shift, c_scale, c_gate = (block.modulation + e6).unbind(2)  # (B, N, D) each
        h = block.norm1(seq) * (1 + scale) + shift
        seq = seq + gate * attention(block.self_attn, h, h, real)  # ONE softmax over [video | conditions]
        seq = seq + attention(block.cross_attn, block.norm3(seq), text)
        seq = seq + c_gate * block.ffn(block.norm2(seq) * (1 + c_scale) + c_shift)
    shift, scale = (m.head.modulation + e[:, :1]).unbind(1)  # (B, D) each
    out = m.head.head(m.head.norm(seq[:, :nv]) * (1 + scale[:, None]) + shift[:, None])  # the video tokens only
    pt, ph, pw = m.cfg.patch
    return rearrange(out, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=grid.t, h=grid.h, pt=pt, ph=ph, pw=pw)


def test_full_attention_is_the_figure_written_out() -> None:
    """FullDiT.forward with `attention: full` equals the figure written out above: every condition, sample 0 without
    its second reference image and without depth (padding keys), float32, 1e-5 relative."""
    m = model("full")
    x, t, ctx = inputs()
    cond = conditions()
    cond["reference"] = ConditionInput(cond["reference"].value, torch.tensor([[True, False], [True, True]]))
    cond["depth"] = ConditionInput(cond["depth"].value, torch.tensor([False, True]))
    with torch.no_grad():
        want, got = figure_written_out(m, x, t, ctx, cond), m(x, t, ctx, None, cond)
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-5
    assert float((got - m(x, t, ctx)).abs().max() / want.abs().max()) > 1e-2  # the conditions matter


def test_isolated_cache_equals_uncached() -> None:
    m = model("isolated")
    x, t, ctx = inputs()
    cond = conditions()
    cache = m.condition_cache(cond, m.grid(x.shape), ctx)
    assert cache is not None and cache.nbytes() > 0
    torch.testing.assert_close(m(x, t, ctx, None, cache=cache), m(x, t, ctx, None, cond), atol=1e-5, rtol=1e-5)
    x2, t2, _ = inputs(seed=5)  # the same cache serves every later step
    torch.testing.assert_close(m(x2, t2, ctx, None, cache=cache), m(x2, t2, ctx, None, cond), atol=1e-5, rtol=1e-5)


def test_isolated_conditions_ignore_the_video_but_full_ones_do_not() -> None:
    """In `isolated` a condition's keys/values are independent of the noisy video; in `full` they are not."""
    for attention, independent in [("isolated", True), ("full", False)]:
        m = model(attention)
        x, t, ctx = inputs()
        cond = conditions()
        packed = m.embed_conditions(cond, m.grid(x.shape))
        block = m.blocks[1]
        seen = []
        hook = block.self_attn.k.register_forward_hook(lambda mod, inp, out, seen=seen: seen.append(out))
        for xi in (x, x + 1):
            m(xi, t, ctx, None, cond)
        hook.remove()
        nc = packed.length
        kc = [s for s in seen if s.shape[1] == nc]  # the condition stream's keys, one per forward
        assert len(kc) == 2
        assert torch.allclose(kc[0], kc[1]) == independent


def test_per_frame_timesteps() -> None:
    m = model()
    x, t, ctx = inputs()
    torch.testing.assert_close(m(x, t, ctx), m(x, t[:, None].expand(B, T), ctx))
    t_frames = t[:, None].expand(B, T).clone()
    t_frames[:, 0] = 0
    assert not torch.allclose(m(x, t_frames, ctx), m(x, t, ctx))


def test_to_dtype_keeps_modulation_fp32() -> None:
    m = FullDiT(tiny_model_config()).to_dtype(torch.bfloat16)
    assert m.blocks[0].modulation.dtype == torch.float32
    assert m.time_embedding[0].weight.dtype == torch.float32
    assert m.blocks[0].self_attn.q.weight.dtype == torch.bfloat16
    x, t, ctx = inputs()
    assert m(x, t, ctx, None, conditions()).dtype == torch.float32


def test_unknown_condition_is_an_error() -> None:
    m = FullDiT(tiny_model_config(conditions=("camera",)))
    x, t, ctx = inputs()
    with pytest.raises(ValueError, match="depth"):
        m(x, t, ctx, None, {"depth": conditions()["depth"]})


def test_condition_layers_skip_blocks_and_cache_only_reading_ones() -> None:
    """model.condition_layers: condition tokens enter only the named blocks; cached == uncached there too."""
    m = model("isolated", layers=3, condition_layers=(0, 2))
    seen = []
    for block in m.blocks:
        block.register_forward_pre_hook(lambda mod, args: seen.append(args[1] is not None))
    x, t, ctx = inputs()
    cond = conditions()
    out = m(x, t, ctx, None, cond)
    assert seen == [True, False, True]
    assert not torch.allclose(out, m(x, t, ctx), atol=1e-3)  # the conditions still act
    cache = m.condition_cache(cond, m.grid(x.shape), ctx)
    assert cache.kv[1] is None and cache.kv[0] is not None and cache.kv[2] is not None
    torch.testing.assert_close(m(x, t, ctx, None, cache=cache), out, atol=1e-5, rtol=1e-5)
    dense = model("isolated", layers=3)
    assert cache.nbytes() == 2 * dense.condition_cache(cond, m.grid(x.shape), ctx).nbytes() // 3


def test_condition_layers_are_validated() -> None:
    from fulldit.errors import InputError

    with pytest.raises(InputError, match="condition_layers"):
        tiny_model_config(layers=2, condition_layers=(0, 2))
    with pytest.raises(InputError, match="condition_layers"):
        tiny_model_config(layers=2, condition_layers=(1, 1))


def test_flops_count_follows_condition_layers_and_the_cache() -> None:
    from fulldit.flops import flops_per_forward

    cfg = tiny_model_config(layers=4, attention="isolated")
    d, f, n, c, lt = cfg.dim, cfg.ffn_dim, 100, 40, 8
    # every block reads all conditions; the last computes only the conditions' queries/keys/values
    per_block = 2 * (n + c) * (6 * d * d + 2 * d * f) + 2 * lt * 2 * d * d
    per_block += 4 * n * (n + c) * d + 4 * c * c * d + 4 * (n + c) * lt * d
    last_saving = 2 * c * (3 * d * d + 2 * d * f) + 4 * c * c * d + 4 * c * lt * d
    assert flops_per_forward(cfg, n, c, lt, cached=False) == 4 * per_block - last_saving
    text_only = flops_per_forward(cfg, n, 0, lt, cached=False)
    sparse = tiny_model_config(layers=4, attention="isolated", condition_layers=(0,))
    cached = flops_per_forward(cfg, n, c, lt, cached=True)
    assert text_only < flops_per_forward(sparse, n, c, lt, cached=True) < cached
    assert cached - text_only == 4 * 4 * n * c * d  # only the video queries' extra keys


@pytest.mark.parametrize("layout", ["isolated", "full+gate"])
@pytest.mark.parametrize("mode", ["full", "selective"])
def test_activation_checkpointing_modes_give_the_same_gradients(mode: str, layout: str) -> None:
    """Recomputing in backward changes no gradient, the gated merge's fused backward (attention_lse) included."""
    if layout == "isolated":
        m = model("isolated", layers=3, condition_layers=(0, 1))
    else:
        m = model("full", layers=3, condition_gate=True)
        for block in m.blocks:
            torch.nn.init.uniform_(block.cond_gate, 0.2, 0.9)
    m.train()
    x, t, ctx = inputs()
    cond = conditions()
    grads = []
    for ckpt in ("none", mode):
        m.zero_grad()
        m.gradient_checkpointing = ckpt
        m(x, t, ctx, None, cond).square().mean().backward()
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="checkpointing"):
        m.gradient_checkpointing = "sometimes"


@pytest.mark.parametrize("layout", ["isolated", "full+gate"])
def test_compiled_blocks_match_eager_with_selective_checkpointing(layout: str) -> None:
    """torch.compile of the blocks (inductor on CPU): same outputs and gradients as eager, padding masks included."""
    m = model("isolated") if layout == "isolated" else model("full", condition_gate=True)
    if layout != "isolated":
        for block in m.blocks:
            torch.nn.init.normal_(block.cond_gate, std=0.5)
    m.train()
    x, t, ctx = inputs()
    cond = conditions()
    cond["depth"] = ConditionInput(cond["depth"].value, torch.tensor([True, False]))
    grads = []
    outs = []
    for compiled in (False, True):
        if compiled:
            m.compile_blocks()
            m.gradient_checkpointing = "selective"
        m.zero_grad()
        out = m(x, t, ctx, None, cond)
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    sd = m.state_dict()
    assert "blocks.0.self_attn.q.weight" in sd  # compiling keeps parameter names
