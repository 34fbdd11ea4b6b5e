"""One denoising step at Wan2.1-1.3B shapes: per condition mix and model variant, side by side in one run.

Config R (Wan2.1-1.3B shapes): dim 1536, 30 layers, 12 heads x 128, FFN 8960, 16 latent channels,
patch (1, 2, 2), 480x832x81 video -> 21 x 30 x 52 = 32,760 video tokens, 512 text tokens of width 4096.
Conditions: camera = 2 tokens per latent frame (42), references = 1,560 tokens each, depth = 32,760 tokens.
Variants:
  full                  FullDiT: every token attends to every token (the naive reference)
  full, gated           the same with condition gates (converted Wan2.1): two dense attentions merged by log-sum-exp
  isolated+cache        FullDiT2's decoupled mask; condition keys/values computed once per generation (exact)
  isolated+cache, compiled        the same with torch.compile of each block (exact up to bf16 rounding)
  every 3rd layer+cache, compiled conditions read in blocks 0, 3, 6, ... only (model.condition_layers: an
                                  architecture choice, trained as such; its quality is FullBench's to report)
Also in the same run: a plain dense pre-norm transformer block at the same width and tokens (compiled: the
practical ceiling of TFLOP/s), diffusers' WanTransformer3DModel (eager, and with --peer-compile its
compile_repeated_blocks) with the same weights layout at the same shapes, and classifier-free guidance as one
batched forward of 3 branches vs 3 separate forwards.

    python bench/step.py                       # on a GPU; bf16; prints tables
    python bench/step.py --layers 2 --device cpu --frames 5 --height 64 --width 64 --no-compile   # CPU smoke run
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import statistics
import time
from functools import partial

import torch
import torch.nn.functional as F

from fulldit.conditions import ConditionInput
from fulldit.config import CameraConfig, ModelConfig
from fulldit.flops import flops_per_forward
from fulldit.generate import branch_inputs
from fulldit.model import FullDiT

MIXES = {
    "text only": {},
    "+ camera": {"camera": 1},
    "+ 1 reference": {"reference": 1},
    "+ 3 references": {"reference": 3},
    "+ depth": {"depth": 1},
    "+ all (camera, 3 refs, depth)": {"camera": 1, "reference": 3, "depth": 1},
}
VARIANTS = {  # name: (attention layout, condition cache, compile, every k-th block reads conditions, gated)
    "full": ("full", False, False, 1, False),
    "full, gated": ("full", False, False, 1, True),  # converted Wan2.1: video keys + condition keys merged by LSE
    "isolated+cache": ("isolated", True, False, 1, False),
    "isolated+cache, compiled": ("isolated", True, True, 1, False),
    "every 3rd layer+cache, compiled": ("isolated", True, True, 3, False),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, warmup: int, repeat: int, device: torch.device) -> float:
    """Median seconds of fn() after warm-up, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def condition_mix(names, lat: tuple[int, int, int], cfg: ModelConfig, device, dtype, batch: int = 1) -> dict:
    """Random condition inputs for `batch` samples. names: a list of conditions (2 references) or {name: count}."""
    counts = names if isinstance(names, dict) else {n: 2 if n == "reference" else 1 for n in names}
    t, h, w = lat
    g = torch.Generator(device="cpu").manual_seed(1)
    one = torch.ones(batch, dtype=torch.bool, device=device)
    out = {}
    if "camera" in counts:
        feats = torch.randn(batch, t // cfg.patch[0], 16 * cfg.camera.frames_per_token, generator=g)
        out["camera"] = ConditionInput(feats.to(device, dtype), one)
    if "reference" in counts:
        n = counts["reference"]
        refs = torch.randn(batch, n, cfg.in_channels, h, w, generator=g)
        out["reference"] = ConditionInput(refs.to(device, dtype), torch.ones(batch, n, dtype=torch.bool, device=device))
    if "depth" in counts:
        depth = torch.randn(batch, cfg.in_channels, t, h, w, generator=g)
        out["depth"] = ConditionInput(depth.to(device, dtype), one)
    return out


def top_kernels(fn, n: int = 8) -> list[tuple[str, float]]:
    """The n CUDA kernels that take the most time in fn() (to see which attention backend runs)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    totals: dict[str, float] = {}
    for e in prof.events():
        if e.device_type.name == "CUDA":
            totals[e.name] = totals.get(e.name, 0.0) + e.device_time_total / 1e3
    return sorted(totals.items(), key=lambda kv: -kv[1])[:n]


def config_r(args: argparse.Namespace, attention: str, every: int = 1, gated: bool = False) -> ModelConfig:
    """Wan2.1-1.3B shapes (or the sizes given on the command line), camera as 2 tokens per latent frame."""
    return ModelConfig(
        in_channels=16,
        patch=(1, 2, 2),
        dim=args.dim,
        layers=args.layers,
        heads=args.heads,
        ffn_dim=args.ffn,
        text_dim=4096,
        attention=attention,
        condition_gate=gated,
        condition_layers=() if every == 1 else tuple(range(0, args.layers, every)),
        camera=CameraConfig(mode="tokens", tokens_per_frame=2, frames_per_token=4),
    )


class PlainBlock(torch.nn.Module):
    """A dense pre-norm transformer block (LayerNorm, fused qkv, SDPA, MLP): the practical TFLOP/s ceiling."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.qkv, self.o = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
        self.ffn = torch.nn.Sequential(torch.nn.Linear(dim, ffn), torch.nn.GELU("tanh"), torch.nn.Linear(ffn, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1)).transpose(1, 3).unbind(2)
        x = x + self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(-2))
        return x + self.ffn(self.norm2(x))


def plain_block_tflops(args, tokens: int, device, dtype, compile_: bool) -> tuple[float, float]:
    """(seconds, TFLOP/s) of one plain dense block on `tokens` tokens."""
    block = PlainBlock(args.dim, args.heads, args.ffn).to(device, dtype)
    if compile_:
        block.compile()
    x = torch.randn(1, tokens, args.dim, device=device, dtype=dtype)
    with torch.no_grad():
        sec = timed(lambda: block(x), args.warmup + 1, max(args.repeat, 10), device)
    flops = 2 * tokens * (4 * args.dim**2 + 2 * args.dim * args.ffn) + 4 * tokens**2 * args.dim
    return sec, flops / sec / 1e12


def peer_model(cfg: ModelConfig, device, dtype):
    """diffusers' WanTransformer3DModel at config R, fp32 modules kept as from_pretrained(torch_dtype=) keeps them."""
    from diffusers import WanTransformer3DModel

    peer = WanTransformer3DModel(
        patch_size=cfg.patch,
        num_attention_heads=cfg.heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_channels,
        out_channels=cfg.in_channels,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.layers,
    )
    return keep_fp32_modules(peer.to(device, dtype).eval())


def keep_fp32_modules(peer: torch.nn.Module) -> torch.nn.Module:
    """Back to fp32 for diffusers' `_keep_in_fp32_modules`, as from_pretrained(torch_dtype=bf16) leaves them."""
    for name, param in peer.named_parameters():
        if any(part in peer._keep_in_fp32_modules for part in name.split(".")):
            param.data = param.data.float()
    return peer


def random_weights(model: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Seeded N(0, std) weights everywhere (norm weights 1): outputs are non-zero, so variants can be compared."""
    g = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        param.data = torch.ones_like(param) if "norm" in name else torch.randn(param.shape, generator=g) * std
    return model


def guidance_rows(model: FullDiT, lat, ctx, cfg, device, dtype, args) -> dict[str, float]:
    """Classifier-free guidance, all conditions, 3 branches (text+conditions, conditions, neither):
    one batched forward (masks split into dense calls) vs 3 separate forwards, steady state (caches built)."""
    x = torch.randn(1, 16, *lat, device=device, dtype=dtype)
    t = torch.tensor([0.5], device=device)
    ctx3 = ctx.expand(3, -1, -1)
    cmask = torch.zeros(3, ctx.shape[1], dtype=torch.bool, device=device)
    cmask[0], cmask[1:, 0] = True, True  # the empty prompt: one real token
    on = torch.tensor([True, True, False], device=device)
    cond1 = condition_mix(MIXES["+ all (camera, 3 refs, depth)"], lat, cfg, device, dtype)
    cond3 = branch_inputs(cond1, on)  # as fulldit generate batches branches
    grid = model.grid(x.shape)
    with torch.no_grad():
        cache3 = model.condition_cache(cond3, grid, ctx3, cmask)
        cache1 = model.condition_cache(cond1, grid, ctx[:1], cmask[1:2])
        x3, t3 = x.expand(3, -1, -1, -1, -1), t.expand(3)
        warm = args.warmup + 2  # compiled: each new shape compiles in the warm-up
        batched = timed(lambda: model(x3, t3, ctx3, cmask, None, cache3), warm, args.repeat, device)

        def separate() -> None:
            model(x, t, ctx, cmask[:1], None, cache1)
            model(x, t, ctx, cmask[1:2], None, cache1)
            model(x, t, ctx, cmask[2:], None, None)

        sep = timed(separate, warm, args.repeat, device)
        agree = (model(x3, t3, ctx3, cmask, None, cache3)[2:] - model(x, t, ctx, cmask[2:])).abs().max().item()
    return {"batched_s": batched, "separate_s": sep, "ratio": batched / sep, "max_abs_diff_row3": agree}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--layers", type=int, default=30)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--ffn", type=int, default=8960)
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--guidance", nargs="*", default=["isolated+cache"], help="variants that time guidance batching")
    p.add_argument("--no-compile", action="store_true", help="skip the compiled variants and the ceiling's compile")
    p.add_argument("--no-peer", action="store_true", help="skip diffusers' WanTransformer3DModel")
    p.add_argument("--peer-compile", action="store_true", help="also time diffusers with compile_repeated_blocks")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    cuda = device.type == "cuda"
    torch._dynamo.config.recompile_limit = 64  # graphs for every mix and guidance shape
    lat = (1 + (args.frames - 1) // 4, args.height // 8, args.width // 8)  # Wan2.1 VAE: 4x8x8, causal in time
    variants = [v for v in args.variants if not (args.no_compile and VARIANTS[v][2])]
    torch.manual_seed(0)
    x = torch.randn(1, 16, *lat, device=device, dtype=dtype)
    t = torch.tensor([0.5], device=device)
    ctx = torch.randn(1, args.text_tokens, 4096, device=device, dtype=dtype)
    rows, profiles, outputs, guidance, report = [], {}, {}, {}, {}
    for variant in variants:
        layout, use_cache, compile_, every, gated = VARIANTS[variant]
        cfg = config_r(args, layout, every, gated)
        model = random_weights(FullDiT(cfg)).to(device).to_dtype(dtype).eval()  # identical in every variant
        if compile_:
            model.compile_blocks()  # shapes that change between mixes become dynamic after the first recompile
        grid = model.grid(x.shape)
        base_sec = base_peak = None
        for mix, counts in MIXES.items():
            cond = condition_mix(counts, lat, cfg, device, dtype)
            with torch.no_grad():
                packed = model.embed_conditions(cond, grid)
                n_cond = 0 if packed is None else packed.length
                cache, build = None, 0.0
                if use_cache and cond:
                    build = timed(partial(model.condition_cache, cond, grid, ctx), 1, 1, device)
                    cache = model.condition_cache(cond, grid, ctx)
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                step = partial(model, x, t, ctx, None, None if cache else cond, cache)
                sec = timed(step, args.warmup + (2 if compile_ and mix == "text only" else 0), args.repeat, device)
                if mix == "text only":
                    outputs[variant] = step().float()
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            base_sec, base_peak = base_sec or sec, base_peak or peak
            segs = None if packed is None else [b - a for a, b in packed.bounds]
            flops = flops_per_forward(cfg, grid.tokens, n_cond, args.text_tokens, cache is not None, segs)
            rows.append(
                dict(
                    variant=variant, mix=mix, video_tokens=grid.tokens, cond_tokens=n_cond, seconds=sec,
                    vs_text_only=sec / base_sec, generation_50=(build + 50 * sec) / (50 * base_sec),
                    cache_build_s=build,
                    tflops=flops / sec / 1e12, peak_gib=peak, peak_vs_text_only=peak / base_peak,
                    cache_mib=0.0 if cache is None else cache.nbytes() / 2**20,
                )
            )  # fmt: skip
            print(f"  {variant:32s} {mix:30s} {sec:8.3f} s", flush=True)
            if cuda and mix in ("text only", "+ all (camera, 3 refs, depth)") and variant != "isolated+cache":
                with torch.no_grad():
                    profiles[f"ours, {variant}, {mix}"] = top_kernels(step)
            del step, cache
        if variant in args.guidance:
            guidance[variant] = guidance_rows(model, lat, ctx, cfg, device, dtype, args)
            print(f"  guidance, {variant}: {guidance[variant]}", flush=True)
        del model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    first = outputs[variants[0]]
    for v, out in outputs.items():  # agreement of every variant's text-only output with the first (same weights)
        report[f"max rel diff vs {variants[0]}: {v}"] = ((out - first).abs().max() / first.abs().max()).item()

    ceiling = {}
    if not args.no_compile:
        ceiling["compiled"] = plain_block_tflops(args, rows[0]["video_tokens"], device, dtype, True)
    ceiling["eager"] = plain_block_tflops(args, rows[0]["video_tokens"], device, dtype, False)

    peer = {}
    if not args.no_peer:
        try:
            model_p = peer_model(config_r(args, "full"), device, dtype)
        except ImportError:
            model_p = None
        if model_p is not None:
            ts = torch.tensor([500.0], device=device)
            step_p = partial(model_p, x, ts, ctx, return_dict=False)
            with torch.no_grad():
                peer["diffusers"] = timed(step_p, args.warmup, args.repeat, device)
                if cuda:
                    profiles["diffusers, text only"] = top_kernels(step_p)
                if args.peer_compile:
                    model_p.compile_repeated_blocks()
                    peer["diffusers, compile_repeated_blocks"] = timed(step_p, args.warmup + 2, args.repeat, device)

    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"\n# bench/step.py  {datetime.date.today()}  {name}  torch {torch.__version__}  {args.dtype}")
    print(
        f"# {args.layers} layers, dim {args.dim}, {args.heads} heads, ffn {args.ffn}; {args.frames} frames "
        f"{args.height}x{args.width} -> latents {lat}; {args.text_tokens} text tokens"
    )
    if cuda:
        b = torch.backends.cuda
        print(f"# SDPA backends enabled: cudnn={b.cudnn_sdp_enabled()} flash={b.flash_sdp_enabled()}")
    print(
        "| variant | conditions | condition tokens | s / step | x text-only | 50-step generation x | TFLOP/s "
        "| peak GiB | peak x text-only | cache MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['mix']} | {r['cond_tokens']:,} | {r['seconds']:.3f} | {r['vs_text_only']:.2f} | "
            f"{r['generation_50']:.2f} | {r['tflops']:.0f} | {r['peak_gib']:.1f} | {r['peak_vs_text_only']:.2f} | "
            f"{r['cache_mib']:.0f} |"
        )
    text_rows = {r["variant"]: r for r in rows if r["mix"] == "text only"}
    print("\n## text-to-video step, ours vs peers and the ceiling")
    for what, (sec, tf) in ceiling.items():
        print(f"plain dense block ({what}), {rows[0]['video_tokens']:,} tokens: {sec * 1e3:.2f} ms, {tf:.0f} TFLOP/s")
    for v, r in text_rows.items():
        line = f"ours, {v}: {r['seconds']:.3f} s, {r['tflops']:.0f} TFLOP/s"
        for what, (_, tf) in ceiling.items():
            line += f"; {r['tflops'] / tf:.2f}x the {what} plain block"
        for peer_name, sec in peer.items():
            line += f"; {peer_name} {sec:.3f} s (its time / ours: {sec / r['seconds']:.2f})"
        print(line)
    for k, v in report.items():
        print(f"{k}: {v:.2e}")
    if guidance:
        print("\n## classifier-free guidance, all conditions, 3 branches: one batched forward vs 3 separate")
        for v, g in guidance.items():
            print(
                f"{v}: batched {g['batched_s']:.3f} s, separate {g['separate_s']:.3f} s, ratio {g['ratio']:.3f} "
                f"(row without conditions, batched vs alone: max abs diff {g['max_abs_diff_row3']:.1e})"
            )
    for what, kernels in profiles.items():
        print(f"\ntop CUDA kernels of one step, {what} (ms):")
        for k, ms in kernels:
            print(f"  {ms:9.1f}  {k[:110]}")
    if args.json:
        with open(args.json, "w") as f:
            out = dict(rows=rows, peer=peer, ceiling=ceiling, guidance=guidance, agreement=report)
            json.dump(dict(out, device=name, torch=torch.__version__), f, indent=1)


if __name__ == "__main__":
    main()
