"""Train a small Wan2.1-style video VAE (diffusers `AutoencoderKLWan`) from scratch on the synthetic world.

Issue #15's stand-in pipeline (VAE + DiT + text encoder in Wan2.1's layout, pretrained on the world) needs a VAE
that knows the world and is small enough to train in minutes; Wan2.1's own is 127M parameters of real-video
knowledge. This script builds the same architecture at a smaller width (causal 3D convolutions, temporal stride 4,
spatial stride 8 like Wan2.1 or 4), renders fresh clips every step (training seeds TRAIN_SEED_BASE + i; planning on
the CPU takes ~1.5 ms a clip, the ray casting runs on --device) and takes an AdamW step on the L1 reconstruction of
a posterior sample + a small KL term, in bf16 autocast on CUDA, with warm-up then cosine decay over the --steps or
--minutes budget (whichever ends first). At the end it measures the per-channel mean / std of the posterior mode
over --stats-clips training clips and writes them into the config as `latents_mean` / `latents_std` (what
`fulldit.codecs.vae.WanVAECodec` and Wan's pipelines normalise latents with), scores the reconstruction PSNR of
--heldout clips of another seed range (HELDOUT_SEED_BASE + i: above the depth and attribute nets' held-out seeds and
the examples', below the benchmark's >= 10**12, never near validation's 5 * 10**11), and writes
`save_pretrained` + train_log.json to --out atomically. Prints one JSON line; `WanVAECodec(OUT)` loads the result.

    python bench/train_wan_vae.py --device cuda --minutes 20 --batch 8 --out checkpoints/standin-vae
    python bench/train_wan_vae.py --device cpu --steps 3 --batch 1 --frames 5 --size 32 --base-dim 8 --z-dim 4 \
        --heldout 2 --stats-clips 2 --out /tmp/vae                                        # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d
from einops import rearrange

from fulldit.atomic import atomic_dir
from fulldit.errors import InputError
from fulldit.world.clips import render_batch

TRAIN_SEED_BASE = 3_000_000  # training clips: TRAIN_SEED_BASE + i
HELDOUT_SEED_BASE = 920_000_000_000  # held-out clips (depth net 9e11, attribute net 9.1e11, examples 7e11)
TEMPORAL_DOWNSAMPLE = {8: [False, True, True], 4: [True, True]}  # per level but the last; Wan2.1: [F, T, T]
DIM_MULT = {8: [1, 2, 4, 4], 4: [1, 2, 4]}  # Wan2.1: [1, 2, 4, 4] (three spatial halvings)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="new (or empty) directory for the AutoencoderKLWan")
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget (evaluation not counted)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: --minutes only)")
    p.add_argument("--batch", type=int, default=8, help="clips per step")
    p.add_argument("--frames", type=int, default=17, help="frames per clip, 1 + 4k (the causal VAE's chunks)")
    p.add_argument("--size", type=int, default=128, help="clips are SIZE x SIZE")
    p.add_argument("--base-dim", type=int, default=64, help="width of the first level (Wan2.1: 96)")
    p.add_argument("--z-dim", type=int, default=16, help="latent channels (Wan2.1: 16)")
    p.add_argument("--spatial", type=int, choices=[8, 4], default=8, help="spatial stride (Wan2.1: 8)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=200, help="warm-up steps (at most a tenth of --steps)")
    p.add_argument("--kl", type=float, default=1e-6, help="KL weight (KL summed over latents, per pixel)")
    p.add_argument("--heldout", type=int, default=64, help="held-out clips scored at the end")
    p.add_argument("--stats-clips", type=int, default=64, help="training clips for latents_mean / latents_std")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0, help="torch seed (init, posterior samples)")
    args = p.parse_args(argv)
    if args.frames < 1 or (args.frames - 1) % 4:
        p.error(f"--frames {args.frames}: the Wan VAE needs 1 + 4k frames (5, 9, 17, ...)")
    if args.size < args.spatial or args.size % args.spatial:
        p.error(f"--size {args.size}: must be a positive multiple of --spatial {args.spatial}")
    if min(args.batch, args.base_dim, args.z_dim, args.heldout, args.stats_clips, args.log_every) < 1:
        p.error("--batch, --base-dim, --z-dim, --heldout, --stats-clips and --log-every must be >= 1")
    if args.steps is not None and args.steps < 1 or not args.lr > 0 or args.kl < 0:
        p.error("--steps >= 1, --lr > 0 and --kl >= 0 are needed")
    return args


def make_vae(base_dim: int, z_dim: int, spatial: int) -> AutoencoderKLWan:
    """A fresh AutoencoderKLWan of Wan2.1's design at another width; latents_mean/std are set after training."""
    return AutoencoderKLWan(
        base_dim=base_dim,
        z_dim=z_dim,
        dim_mult=DIM_MULT[spatial],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=TEMPORAL_DOWNSAMPLE[spatial],  # diffusers' spelling
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
        scale_factor_temporal=4,
        scale_factor_spatial=spatial,  # only used by tiling; WanVAECodec derives strides from dim_mult
    )


def render_videos(seeds: Sequence[int], frames: int, size: int, device: str | torch.device) -> torch.Tensor:
    """(B, 3, F, S, S) in [-1, 1] on `device`: the videos of these world seeds, in one ray-casting pass."""
    clips = render_batch(seeds, frames, size, size, device, references_per_object=0)
    return rearrange(torch.stack([c.video for c in clips]), "b f c h w -> b c f h w") * 2 - 1


def decode_unclamped(vae: AutoencoderKLWan, z: torch.Tensor) -> torch.Tensor:
    """`vae.decode(z).sample` without its final clamp to [-1, 1], which zeroes the gradient of overshooting pixels.

    The same loop as diffusers' `AutoencoderKLWan._decode`: one latent frame at a time through the causal decoder,
    its convolutions carrying the previous frames in `cache` (without the cache, time is never upsampled).
    """
    cache: list = [None] * sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
    x = vae.post_quant_conv(z)  # (B, C, T, h, w)
    frames = [
        vae.decoder(x[:, :, i : i + 1], feat_cache=cache, feat_idx=[0], first_chunk=i == 0)  # (B, 3, 1 or 4, H, W)
        for i in range(x.shape[2])
    ]
    return torch.cat(frames, 2)  # (B, 3, F, H, W)


def vae_loss(vae: AutoencoderKLWan, video: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, dict]:
    """L1 of the reconstruction of a posterior sample + kl_weight * KL; video (B, 3, F, H, W) in [-1, 1].

    KL is summed over the latents and divided by the pixel count, the weighting of Stable Diffusion's VAE (its 1e-6
    is per summed pixel loss); diffusers' `DiagonalGaussianDistribution.kl()` would sum only dims 1-3 of 5-D latents.
    """
    posterior = vae.encode(video).latent_dist
    recon = decode_unclamped(vae, posterior.sample())  # (B, 3, F, H, W)
    l1 = (recon.float() - video).abs().mean()
    mean, logvar = posterior.mean.float(), posterior.logvar.float()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum() / video.numel()
    return l1 + kl_weight * kl, {"l1": l1.detach(), "kl": kl.detach()}


def lr_factor(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 to 0.1 over the budget's progress in [0, 1]."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def encode_many(vae: AutoencoderKLWan, base: int, count: int, args: argparse.Namespace) -> torch.Tensor:
    """Posterior modes (N, C, T, h, w) float32 on the CPU of the clips of seeds base .. base + count - 1."""
    out = []
    for i in range(0, count, 8):
        video = render_videos(range(base + i, base + min(count, i + 8)), args.frames, args.size, args.device)
        out.append(vae.encode(video).latent_dist.mode().float().cpu())
    return torch.cat(out)


def set_latent_stats(vae: AutoencoderKLWan, args: argparse.Namespace) -> None:
    """Write the per-channel mean / std of the posterior mode over --stats-clips training clips (every latent
    position, as Wan's statistics) into the config as latents_mean / latents_std."""
    z = encode_many(vae, TRAIN_SEED_BASE, args.stats_clips, args)  # (N, C, T, h, w)
    mean, std = z.mean((0, 2, 3, 4)), z.std((0, 2, 3, 4)).clamp_min(1e-6)
    vae.register_to_config(latents_mean=[round(float(v), 6) for v in mean],
                           latents_std=[round(float(v), 6) for v in std])  # fmt: skip


@torch.no_grad()
def heldout_psnr(vae: AutoencoderKLWan, base: int, count: int, args: argparse.Namespace) -> float:
    """Mean over clips of the reconstruction PSNR (dB, frames in [0, 1]) through the posterior mode, float32."""
    scores = []
    for i in range(0, count, 8):
        video = render_videos(range(base + i, base + min(count, i + 8)), args.frames, args.size, args.device)
        recon = vae.decode(vae.encode(video).latent_dist.mode()).sample  # clamped to [-1, 1], as WanVAECodec
        mse = ((recon.float() - video) / 2).pow(2).flatten(1).mean(1)  # (B,), in [0, 1] units
        scores.append(10 * torch.log10(1 / mse.clamp_min(1e-10)).cpu())
    return float(torch.cat(scores).mean())


def train_vae(args: argparse.Namespace) -> dict:
    """Train, set latents_mean/std, score held-out PSNR, write args.out atomically; returns the logged info."""
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty directory; choose a new --out")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(args.seed)
    if cuda:
        torch.backends.cudnn.benchmark = True
    vae = make_vae(args.base_dim, args.z_dim, args.spatial).to(device).train()
    params = sum(p.numel() for p in vae.parameters())
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    warmup = min(args.warmup, args.steps // 10) if args.steps else args.warmup
    budget = args.minutes * 60
    print(f"AutoencoderKLWan {params / 1e6:.2f}M params (base {args.base_dim}, z {args.z_dim}, stride 4x"
          f"{args.spatial}x{args.spatial}); {device}; {args.batch} clips of {args.frames}x{args.size}x{args.size} "
          f"a step; budget {args.steps or '-'} steps / {args.minutes} min", flush=True)  # fmt: skip
    step, t_train, t_render = 0, 0.0, 0.0
    sums, count, last = {"l1": torch.zeros((), device=device), "kl": torch.zeros((), device=device)}, 0, {}
    while True:
        t0 = time.perf_counter()
        seeds = range(TRAIN_SEED_BASE + step * args.batch, TRAIN_SEED_BASE + (step + 1) * args.batch)
        video = render_videos(seeds, args.frames, args.size, device)
        if cuda:
            torch.cuda.synchronize()  # so that the render time is the render's
        t1 = time.perf_counter()
        progress = max(step / args.steps if args.steps else 0.0, t_train / budget if budget > 0 else 0.0)
        for group in opt.param_groups:
            group["lr"] = args.lr * lr_factor(step, progress, warmup)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss, parts = vae_loss(vae, video, args.kl)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        for k, v in parts.items():
            sums[k] += v
        count += 1
        step += 1
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        t_render += t1 - t0
        t_train += t2 - t0
        done = (args.steps is not None and step >= args.steps) or t_train >= budget
        if step % args.log_every == 0 or done or step == 1:
            last = {k: float(v) / count for k, v in sums.items()}
            print(f"step {step:6d}  {t_train / 60:6.2f} min  l1 {last['l1']:.4f}  kl {last['kl']:.3f}  "
                  f"lr {opt.param_groups[0]['lr']:.2e}  {step * args.batch / t_train:.1f} clips/s  "
                  f"(render {100 * t_render / t_train:.0f}%)", flush=True)  # fmt: skip
            sums, count = {k: torch.zeros_like(v) for k, v in sums.items()}, 0
        if done:
            break

    vae.eval()
    set_latent_stats(vae, args)
    psnr = heldout_psnr(vae, HELDOUT_SEED_BASE, args.heldout, args)
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "steps": step, "minutes": round(t_train / 60, 2), "render_share": round(t_render / max(t_train, 1e-9), 3),
        "clips_per_s": round(step * args.batch / max(t_train, 1e-9), 2),
        "final_l1": round(last["l1"], 5), "final_kl": round(last["kl"], 4),
        "heldout_psnr": round(psnr, 2), "heldout_clips": args.heldout,
        "heldout_seeds": [HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + args.heldout - 1],
        "train_seeds": [TRAIN_SEED_BASE, TRAIN_SEED_BASE + step * args.batch - 1],
        "stats_clips": args.stats_clips, "parameters": params,
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "config": {k: v for k, v in vae.config.items() if not k.startswith("_")},
    }  # fmt: skip
    with atomic_dir(out) as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
        (tmp / "train_log.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info), flush=True)
    return info


def main(argv: Sequence[str] | None = None) -> dict:
    return train_vae(parse_args(argv))


if __name__ == "__main__":
    main()
