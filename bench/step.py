"""Forward time of one denoising step, per condition mix and attention layout, side by side in one run.

Config R (Wan2.1-1.3B shapes): dim 1536, 30 layers, 12 heads x 128, FFN 8960, 16 latent channels,
patch (1, 2, 2), 480x832x81 video -> 21 x 30 x 52 = 32,760 video tokens, 512 text tokens of width 4096.
Conditions: camera = 2 tokens per latent frame (42), 2 references = 2 x 1,560 tokens, depth = 32,760
tokens. Layouts: `full` (every token attends to every token), `isolated` (conditions attend only to
themselves) and `isolated+cache` (condition keys/values computed once per generation and reused:
the steady-state step of a 50-step generation).

    python bench/step.py                       # on a GPU; bf16; prints a table
    python bench/step.py --layers 2 --device cpu --frames 5 --height 64 --width 64   # a quick CPU smoke run

With diffusers installed, the table also times diffusers' WanTransformer3DModel (same shapes, text
only) in the same run, as the peer.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from functools import partial

import torch

from fulldit.conditions import ConditionInput
from fulldit.config import CameraConfig, ModelConfig
from fulldit.model import FullDiT, flops_per_forward


def timed(fn, warmup: int, repeat: int, device: torch.device) -> float:
    """Median seconds of fn() after warm-up, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def condition_mix(names: list[str], lat: tuple[int, int, int], cfg: ModelConfig, device, dtype, batch: int = 1) -> dict:
    """Random condition inputs for `batch` samples: camera features, 2 references, a depth video."""
    t, h, w = lat
    g = torch.Generator(device="cpu").manual_seed(1)
    one = torch.ones(batch, dtype=torch.bool, device=device)
    out = {}
    if "camera" in names:
        feats = torch.randn(batch, t // cfg.patch[0], 16 * cfg.camera.frames_per_token, generator=g)
        out["camera"] = ConditionInput(feats.to(device, dtype), one)
    if "reference" in names:
        refs = torch.randn(batch, 2, cfg.in_channels, h, w, generator=g)
        both = torch.ones(batch, 2, dtype=torch.bool, device=device)
        out["reference"] = ConditionInput(refs.to(device, dtype), both)
    if "depth" in names:
        depth = torch.randn(batch, cfg.in_channels, t, h, w, generator=g)
        out["depth"] = ConditionInput(depth.to(device, dtype), one)
    return out


def peer_step(
    cfg: ModelConfig, lat: tuple[int, int, int], text_tokens: int, device, dtype, warmup, repeat
) -> tuple[float, list[tuple[str, float]]]:
    """diffusers' WanTransformer3DModel at the same shapes (text only): seconds and top kernels (NaN without it)."""
    try:
        from diffusers import WanTransformer3DModel
    except ImportError:
        return float("nan"), []
    peer = (
        WanTransformer3DModel(
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
        .to(device, dtype)
        .eval()
    )
    for name, param in peer.named_parameters():  # as diffusers' from_pretrained(torch_dtype=...) keeps them
        if any(k in name for k in peer._keep_in_fp32_modules):
            param.data = param.data.float()
    x = torch.randn(1, cfg.in_channels, *lat, device=device, dtype=dtype)
    ctx = torch.randn(1, text_tokens, cfg.text_dim, device=device, dtype=dtype)
    ts = torch.tensor([500.0], device=device)
    step = partial(peer, x, ts, ctx, return_dict=False)
    with torch.no_grad():
        sec = timed(step, warmup, repeat, device)
        kernels = top_kernels(step) if device.type == "cuda" else []
    return sec, kernels


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


def config_r(args: argparse.Namespace, attention: str) -> ModelConfig:
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
        camera=CameraConfig(mode="tokens", tokens_per_frame=2, frames_per_token=4),
    )


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
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-peer", action="store_true", help="skip diffusers' WanTransformer3DModel")
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    lat = (1 + (args.frames - 1) // 4, args.height // 8, args.width // 8)  # Wan2.1 VAE: 4x8x8, causal in time
    mixes = {
        "text only": [],
        "+ camera": ["camera"],
        "+ 2 references": ["reference"],
        "+ depth": ["depth"],
        "+ all": ["camera", "reference", "depth"],
    }
    rows, base, profiles = [], {}, {}
    for layout in ["full", "isolated", "isolated+cache"]:
        cfg = config_r(args, attention=layout.split("+")[0])
        torch.manual_seed(0)
        model = FullDiT(cfg).to(device).to_dtype(dtype).eval()
        x = torch.randn(1, 16, *lat, device=device, dtype=dtype)
        t = torch.tensor([0.5], device=device)
        ctx = torch.randn(1, args.text_tokens, 4096, device=device, dtype=dtype)
        grid = model.grid(x.shape)
        for mix, names in mixes.items():
            cond = condition_mix(names, lat, cfg, device, dtype)
            with torch.no_grad():
                packed = model.embed_conditions(cond, grid)
                n_cond = 0 if packed is None else packed.length
                cache = None
                if layout == "isolated+cache" and cond:
                    cache = model.condition_cache(cond, grid, ctx)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                step = partial(model, x, t, ctx, None, None if cache else cond, cache)
                sec = timed(step, args.warmup, args.repeat, device)
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            flops = flops_per_forward(cfg, grid.tokens, n_cond, args.text_tokens, cached=cache is not None)
            base.setdefault(layout, sec)
            rows.append(
                dict(
                    layout=layout,
                    mix=mix,
                    video_tokens=grid.tokens,
                    cond_tokens=n_cond,
                    seconds=sec,
                    vs_text_only=sec / base[layout],
                    tflops=flops / sec / 1e12,
                    peak_gib=peak,
                    cache_mib=0.0 if cache is None else cache.nbytes() / 2**20,
                )
            )
            print(f"  {layout:15s} {mix:16s} {sec:8.3f} s", flush=True)
            if device.type == "cuda" and layout == "full" and mix in ("text only", "+ all"):
                with torch.no_grad():
                    profiles[f"ours, full, {mix}"] = top_kernels(step)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    peer = {}
    if not args.no_peer:
        peer["text only"], profiles["diffusers, text only"] = peer_step(
            config_r(args, attention="full"),
            lat,
            args.text_tokens,
            device,
            dtype,
            args.warmup,
            args.repeat,
        )

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"\n# bench/step.py  {datetime.date.today()}  {name}  torch {torch.__version__}  {args.dtype}")
    print(
        f"# {args.layers} layers, dim {args.dim}, {args.heads} heads, ffn {args.ffn}; {args.frames} frames "
        f"{args.height}x{args.width} -> latents {lat}; {args.text_tokens} text tokens"
    )
    if device.type == "cuda":
        b = torch.backends.cuda
        print(
            f"# SDPA backends enabled: cudnn={b.cudnn_sdp_enabled()} flash={b.flash_sdp_enabled()} "
            f"mem_efficient={b.mem_efficient_sdp_enabled()}"
        )
    print(
        "| layout | conditions | video tokens | condition tokens | s / step | x text-only | TFLOP/s | peak GiB "
        "| cache MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layout']} | {r['mix']} | {r['video_tokens']:,} | {r['cond_tokens']:,} | {r['seconds']:.3f} | "
            f"{r['vs_text_only']:.2f} | {r['tflops']:.0f} | {r['peak_gib']:.1f} | {r['cache_mib']:.0f} |"
        )
    for what, kernels in profiles.items():
        print(f"\ntop CUDA kernels of one step, {what} (ms):")
        for k, ms in kernels:
            print(f"  {ms:9.1f}  {k[:110]}")
    if peer:
        ours = rows[0]["seconds"]
        print(
            f"\npeer: diffusers WanTransformer3DModel, text only: {peer['text only']:.3f} s / step "
            f"(ours, full, text only: {ours:.3f} s; ratio peer/ours {peer['text only'] / ours:.2f})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "peer": peer, "device": name, "torch": torch.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
