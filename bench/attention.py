"""Throughput of fulldit's decoupled and masked attention against plain dense SDPA, side by side in one run.

Shapes of config R (Wan2.1-1.3B: 12 heads x 128) with every condition: 32,760 video tokens, camera 42,
3 references x 1,560, depth 32,760. Rows (each runs the model's own code, `Block.attention`):
  decoupled, uncached  video queries read all keys, each condition reads only itself (FullDiT2's mask, the
                       training forward), vs one dense SDPA over the same total sequence
  cached step          video queries read video + cached condition keys (the steady-state generation step),
                       vs one dense SDPA of the same query and key lengths
  guidance batch       3 rows (2 with conditions, 1 without, whose condition keys are padding): our split into
                       dense calls vs one masked SDPA call, both vs dense SDPA
  decoupled, fwd+bwd   the training case with gradients, vs dense SDPA fwd+bwd over the same total sequence
  gated (lse), fwd+bwd a converted Wan2.1's video queries over video + condition keys through the log-sum-exp gate
                       (issue #15), vs dense SDPA fwd+bwd of the same query and key lengths; and the same merge with
                       its log-sum-exps differentiated (`attend_lse`, the backward before the fused one); its
                       forward alone; on a GPU the kernels that take its time and dense SDPA's, and which fused
                       kernels the probes chose
  gated (lse), 8 mask patterns  a training micro-batch of 8 samples (1/8 of the tokens each) whose condition keys
                       end at 8 different places (condition subsets), one pair of dense calls per pattern, vs dense
                       SDPA fwd+bwd over every key without a mask. One masked fused call each way instead (commit
                       af6e637) timed the same on an H200, at these shapes and at the stand-in's: not kept
Throughput counts useful FLOPs only (4 x queries x real keys x width; x3.5 for forward + backward).

    python bench/attention.py            # on a GPU, bf16
    python bench/attention.py --device cpu --dtype float32 --scale 0.05     # CPU smoke run
"""

from __future__ import annotations

import argparse
import datetime

import torch
import torch.nn.functional as F
from step import timed, top_kernels  # bench/step.py, beside this script

from fulldit.attention_lse import _backward_kernel, _forward_kernel, _merge, attend_lse
from fulldit.model import Block, StepInputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--scale", type=float, default=1.0, help="scale every token count (CPU smoke runs)")
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    h, d = args.heads, args.head_dim
    width = h * d
    nv = int(32760 * args.scale)
    segments = [max(1, int(n * args.scale)) for n in (42, 3 * 1560, 32760)]  # camera, 3 references, depth
    nc = sum(segments)
    bounds, start = [], 0
    for n in segments:
        bounds.append((start, start + n))
        start += n
    block = Block(width, h, 4 * width, 1e-6, "isolated")  # only its attention() runs: weights unused

    def rand(b: int, n: int, grad: bool = False) -> torch.Tensor:
        return torch.randn(b, n, h, d, device=device, dtype=dtype, requires_grad=grad)

    def inputs(mask: torch.Tensor | None) -> StepInputs:
        return StepInputs(None, None, None, None, None, None, mask, bounds)

    def dense(lq: int, lk: int, b: int = 1, grad: bool = False):
        q, k, v = rand(b, lq, grad), rand(b, lk, grad), rand(b, lk, grad)
        return lambda: F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))

    def tflops(flops: float, sec: float) -> float:
        return flops / sec / 1e12

    rows = []
    own = sum(n * n for n in segments)
    with torch.no_grad():
        # 1. decoupled, uncached (forward)
        qv, kv, vv, qc, kc, vc = rand(1, nv), rand(1, nv), rand(1, nv), rand(1, nc), rand(1, nc), rand(1, nc)
        s = inputs(None)
        ours = timed(lambda: block.attention(qv, kv, vv, qc, kc, vc, s), 2, args.repeat, device)
        ref = timed(dense(nv + nc, nv + nc), 2, args.repeat, device)
        flops = 4 * width * (nv * (nv + nc) + own)
        rows.append(("decoupled, uncached", ours, tflops(flops, ours), ref, tflops(4 * width * (nv + nc) ** 2, ref)))
        kernels = []
        if device.type == "cuda":
            kernels = [
                (f"decoupled, uncached: {k}", ms)
                for k, ms in top_kernels(lambda: block.attention(qv, kv, vv, qc, kc, vc, s), 4)
            ]
        # 2. cached step: video queries only
        ours = timed(lambda: block.attention(qv, kv, vv, None, kc, vc, s), 2, args.repeat, device)
        ref = timed(dense(nv, nv + nc), 2, args.repeat, device)
        flops = 4 * width * nv * (nv + nc)
        rows.append(("cached step", ours, tflops(flops, ours), ref, tflops(flops, ref)))
        # 3. guidance batch: rows 0, 1 with conditions, row 2 without (its condition keys are padding)
        q3, k3, v3 = rand(3, nv), rand(3, nv), rand(3, nv)
        kc3, vc3 = rand(3, nc), rand(3, nc)
        mask = torch.ones(3, nc, dtype=torch.bool, device=device)
        mask[2] = False
        s3 = inputs(mask)
        ours = timed(lambda: block.attention(q3, k3, v3, None, kc3, vc3, s3), 2, args.repeat, device)
        full_mask = F.pad(mask, (nv, 0), value=True)[:, None, None, :]
        k_all, v_all = torch.cat([k3, kc3], 1).transpose(1, 2), torch.cat([v3, vc3], 1).transpose(1, 2)
        masked = timed(
            lambda: F.scaled_dot_product_attention(q3.transpose(1, 2), k_all, v_all, attn_mask=full_mask),
            2,
            args.repeat,
            device,
        )
        flops = 4 * width * nv * (2 * (nv + nc) + nv)
        ref_sec, ref_tf = rows[-1][3], rows[-1][4]  # dense SDPA, one row with every key
        rows.append(("guidance batch, split into dense calls", ours, tflops(flops, ours), ref_sec, ref_tf))
        rows.append(("guidance batch, one masked SDPA call", masked, tflops(flops, masked), ref_sec, ref_tf))
    # 4. decoupled, forward + backward
    qv, kv, vv, qc, kc, vc = (rand(1, n, True) for n in (nv, nv, nv, nc, nc, nc))

    def train_step() -> None:
        out_v, out_c = block.attention(qv, kv, vv, qc, kc, vc, s)
        (out_v.float().sum() + out_c.float().sum()).backward()

    ours = timed(train_step, 2, args.repeat, device)
    q, k, v = rand(1, nv + nc, True), rand(1, nv + nc, True), rand(1, nv + nc, True)

    def dense_step() -> None:
        F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).float().sum().backward()

    ref = timed(dense_step, 2, args.repeat, device)
    flops = 3.5 * 4 * width * (nv * (nv + nc) + own)
    rows.append(("decoupled, fwd+bwd", ours, tflops(flops, ours), ref, tflops(3.5 * 4 * width * (nv + nc) ** 2, ref)))

    # 5. the gated merge (lse) of a converted backbone, forward + backward: video queries only
    gated = Block(width, h, 4 * width, 1e-6, "full", True, "lse").to(device)
    with torch.no_grad():
        gated.cond_gate.fill_(0.5)
    qv, kv, vv, kc, vc = (rand(1, n, True) for n in (nv, nv, nv, nc, nc))

    def gated_step() -> None:
        gated.attention(qv, kv, vv, None, kc, vc, s)[0].float().sum().backward()

    def lse_differentiated_step() -> None:
        o_v, l_v = attend_lse(qv, kv, vv, None)
        o_c, l_c = attend_lse(qv, kc, vc, None)
        _merge(gated.gate(), o_v, l_v, o_c, l_c)[0].float().sum().backward()

    q, k, v = rand(1, nv, True), rand(1, nv + nc, True), rand(1, nv + nc, True)
    ref = timed(dense_step, 2, args.repeat, device)
    flops = 3.5 * 4 * width * nv * (nv + nc)
    steps = [("gated (lse), fwd+bwd", gated_step)]
    steps.append(("gated (lse), log-sum-exps differentiated", lse_differentiated_step))
    for case, step in steps:
        ours = timed(step, 2, args.repeat, device)
        rows.append((case, ours, tflops(flops, ours), ref, tflops(flops, ref)))
    with torch.no_grad():  # the forward alone: where the gated step's time goes, with the kernels below
        ours = timed(lambda: gated.attention(qv, kv, vv, None, kc, vc, s), 2, args.repeat, device)
        ref = timed(dense(nv, nv + nc), 2, args.repeat, device)
        flops = 4 * width * nv * (nv + nc)
        rows.append(("gated (lse), forward", ours, tflops(flops, ours), ref, tflops(flops, ref)))
    if device.type == "cuda":
        kernels += [(f"gated fwd+bwd: {k}", ms) for k, ms in top_kernels(gated_step, 6)]
        kernels += [(f"dense fwd+bwd: {k}", ms) for k, ms in top_kernels(dense_step, 4)]

    # 6. the gated merge over a micro-batch of 8 samples whose condition keys end at 8 places (8 mask patterns)
    b, nvb, ncb = 8, nv // 8, max(8, nc // 8)
    qv, kv, vv, kc, vc = (rand(b, n, True) for n in (nvb, nvb, nvb, ncb, ncb))
    ends = [ncb * (i + 1) // b for i in range(b)]
    cond = torch.arange(ncb, device=device)[None] < torch.tensor(ends, device=device)[:, None]
    s8 = inputs(cond)

    def gated_batch_step() -> None:
        gated.attention(qv, kv, vv, None, kc, vc, s8)[0].float().sum().backward()

    q, k, v = rand(b, nvb, True), rand(b, nvb + ncb, True), rand(b, nvb + ncb, True)
    ref = timed(dense_step, 2, args.repeat, device)
    flops = 3.5 * 4 * width * sum(nvb * (nvb + e) for e in ends)
    ref_tf = tflops(3.5 * 4 * width * b * nvb * (nvb + ncb), ref)
    ours = timed(gated_batch_step, 2, args.repeat, device)
    rows.append(("gated (lse), 8 mask patterns, fwd+bwd", ours, tflops(flops, ours), ref, ref_tf))

    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"\n# bench/attention.py  {datetime.date.today()}  {name}  torch {torch.__version__}  {args.dtype}")
    print(f"# {h} heads x {d}; {nv:,} video tokens; condition segments {segments}")
    print("| case | ours ms | ours TFLOP/s | dense SDPA ms | dense SDPA TFLOP/s | ours / dense throughput |")
    print("|---|---|---|---|---|---|")
    for case, sec, tf, rsec, rtf in rows:
        print(f"| {case} | {sec * 1e3:.1f} | {tf:.0f} | {rsec * 1e3:.1f} | {rtf:.0f} | {tf / rtf:.3f} |")
    back = _backward_kernel(device.type, dtype)  # chosen by the probe at the first gated step
    print(
        f"  gated (lse) kernels: forward {_forward_kernel(device.type, dtype).__name__}, "
        f"backward {back.__name__ if back else 'none (the log-sum-exps differentiated)'}"
    )
    for k, ms in kernels:
        print(f"  kernel {ms:8.2f} ms  {k[:120]}")


if __name__ == "__main__":
    main()
