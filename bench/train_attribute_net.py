"""Train AttributeNet, FullBench-Synth's text-adherence and realism classifier, on ground-truth world clips; score it.

Renders --clips training clips (seeds TRAIN_SEED_BASE + i, far below the benchmark's seeds >= 10**12) once, straight
at the classifier's input size (the same camera move over 8 frames at 128x128: half the rays of a 16-frame clip; a GPU
renders tens of thousands in a minute), keeps them in memory and trains for --epochs with light augmentation
(brightness/contrast, noise, and softening half of the clips: decoded generated frames are softer than renders).
Binary cross-entropy
for the multi-label groups (shapes, colours, patterns, camera moves), cross-entropy for walls and floor.
Then it validates on --heldout clips of another seed range: caption-attribute accuracy per group on the ground
truth (the ceiling a generated video is compared with) and the Fréchet distance between two halves of the
held-out ground truth (the floor of the distance), and between the ground truth and softened ground truth (that
the distance sees blur). Prints one JSON line; the weights keep it as provenance.

    python bench/train_attribute_net.py --out fulldit/eval/weights/synth_attributes.safetensors
    python bench/train_attribute_net.py --clips 32 --heldout 16 --epochs 1 --out /tmp/a.safetensors   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from fulldit.eval.attributes import (
    FRAMES,
    GROUPS,
    SIZE,
    AttributeNet,
    attribute_accuracy,
    frechet_distance,
    prepare,
    targets,
)
from fulldit.world.clips import render_batch

TRAIN_SEED_BASE = 7_000_000
HELDOUT_SEED_BASE = 910_000_000_000


def render(base: int, count: int, device: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Classifier inputs (N, 3, 8, 128, 128) uint8 and stacked targets per group, for seeds base .. base + count - 1."""
    inputs, tgts = [], {name: [] for name in GROUPS}
    chunk = 64 if device.startswith("cuda") else 16
    for i in range(0, count, chunk):
        for clip in render_batch(range(base + i, base + min(count, i + chunk)), FRAMES, SIZE, SIZE, device, 0):
            inputs.append(((prepare(clip.video.cpu()) + 1) * 127.5).round().to(torch.uint8))
            for name, t in targets(clip.meta).items():
                tgts[name].append(t)
    return torch.stack(inputs), {name: torch.stack(v) for name, v in tgts.items()}


def soften(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling and back: the look of blurry generated frames. x (B, 3, T, H, W)."""
    b, c, t, h, w = x.shape
    y = F.avg_pool2d(x.transpose(1, 2).reshape(b * t, c, h, w), 2)
    y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
    return y.reshape(b, t, c, h, w).transpose(1, 2)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Brightness/contrast, softening of half the clips and pixel noise; `g` lives on x's device."""
    b = x.shape[0]
    scale = torch.rand(b, 1, 1, 1, 1, generator=g, device=x.device) * 0.4 + 0.8
    shift = torch.rand(b, 1, 1, 1, 1, generator=g, device=x.device) * 0.16 - 0.08
    x = x * scale + shift
    soft = (torch.rand(b, generator=g, device=x.device) < 0.5)[:, None, None, None, None]
    x = torch.where(soft, soften(x), x)
    return x + torch.randn(x.shape, generator=g, device=x.device) * 0.03


def loss_fn(logits: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor]) -> torch.Tensor:
    total = 0.0
    for name, (_, multi) in GROUPS.items():
        z, t = logits[name].float(), tgt[name]
        total = total + (F.binary_cross_entropy_with_logits(z, t) if multi else F.cross_entropy(z, t.argmax(1)))
    return total / len(GROUPS)


@torch.no_grad()
def read_all(net: AttributeNet, x: torch.Tensor, device: str, chunk: int = 64) -> tuple[np.ndarray, dict]:
    feats, logits = [], {name: [] for name in GROUPS}
    for i in range(0, len(x), chunk):
        h, out = net(x[i : i + chunk].to(device).float() / 127.5 - 1)
        feats.append(h.float().cpu())
        for name in GROUPS:
            logits[name].append(out[name].float().cpu())
    return torch.cat(feats).numpy(), {name: torch.cat(v) for name, v in logits.items()}


def predictions(logits: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    return {
        name: (logits[name][i] > 0).float() if multi else F.one_hot(logits[name][i].argmax(), logits[name].shape[1])
        for name, (_, multi) in GROUPS.items()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--clips", type=int, default=3000)
    p.add_argument("--heldout", type=int, default=256)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.clips < 2 or args.heldout < 4 or args.epochs < 1 or args.batch < 1 or not args.lr > 0:
        p.error("--clips >= 2, --heldout >= 4, --epochs >= 1, --batch >= 1 and --lr > 0 are needed")
    t0 = time.time()
    x, tgt = render(TRAIN_SEED_BASE, args.clips, args.device)
    xh, th = render(HELDOUT_SEED_BASE, args.heldout, args.device)
    render_s = time.time() - t0
    torch.manual_seed(args.seed)
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(args.seed)
    g_aug = torch.Generator(args.device).manual_seed(args.seed)
    net = AttributeNet().to(args.device)
    steps = args.epochs * math.ceil(len(x) / args.batch)
    opt = torch.optim.AdamW(net.parameters(), args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
    t1, step = time.time(), 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), args.batch):
            idx = order[i : i + args.batch]
            xb = augment(x[idx].to(args.device).float() / 127.5 - 1, g_aug)
            _, logits = net(xb)
            loss = loss_fn(logits, {k: v[idx].to(args.device) for k, v in tgt.items()})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        net.eval()
        _, held = read_all(net, xh, args.device)
        net.train()
        mean = np.mean([attribute_accuracy(predictions(held, i), {k: v[i] for k, v in th.items()})["mean"]
                        for i in range(len(xh))])  # fmt: skip
        print(f"epoch {epoch + 1}/{args.epochs}: loss {float(loss):.4f}, held-out accuracy {mean:.3f}", flush=True)
    train_s = time.time() - t1
    net.eval()
    feats, logits = read_all(net, xh, args.device)
    acc = [attribute_accuracy(predictions(logits, i), {k: v[i] for k, v in th.items()}) for i in range(len(xh))]
    per_group = {name: float(np.mean([a[name] for a in acc])) for name in [*GROUPS, "mean"]}
    half = len(feats) // 2
    soft_feats, _ = read_all(net, ((soften(xh.float() / 127.5 - 1) + 1) * 127.5).round().to(torch.uint8), args.device)
    info = {
        "date": time.strftime("%Y-%m-%d"), "device": args.device, "train_clips": args.clips, "epochs": args.epochs,
        "steps": step, "render_s": round(render_s, 1), "train_s": round(train_s, 1),
        "train_seeds": [TRAIN_SEED_BASE, TRAIN_SEED_BASE + args.clips - 1],
        "heldout_clips": len(xh), "heldout_seeds": [HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + len(xh) - 1],
        "heldout_accuracy": per_group,
        "fd_gt_halves": frechet_distance(feats[:half], feats[half:]),
        "fd_gt_vs_softened_gt": frechet_distance(feats, soft_feats),
    }  # fmt: skip
    net.save(args.out, info)
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
