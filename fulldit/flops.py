"""FLOPs of one FullDiT forward, counted from what the model computes: the TFLOP/s and MFU figures of training
logs and benchmarks (`train/loop.py`, `bench/step.py`, `bench/train.py`) divide this by measured time."""

from __future__ import annotations

from fulldit.config import ModelConfig


def flops_per_forward(
    cfg: ModelConfig,
    video_tokens: int,
    cond_tokens: int,
    text_tokens: int,
    cached: bool,
    segments: list[int] | None = None,
) -> float:
    """Matmul FLOPs of one forward (attention included), for MFU/TFLOP/s reports.

    Follows what the model computes: condition keys/values only in the blocks that read them
    (`condition_layers`), condition queries and updates not in the last of those (nothing reads them after),
    nothing for the conditions when `cached`. segments: token counts of each condition (isolated layout: each
    attends only to itself); default one segment.
    """
    d, f = cfg.dim, cfg.ffn_dim
    segs = segments if segments is not None else [cond_tokens]
    reads = [cfg.reads_conditions(i) for i in range(cfg.layers)]
    last = max(i for i, r in enumerate(reads) if r)
    nv, total = video_tokens, 0
    for i, r in enumerate(reads):
        nc = cond_tokens if r else 0  # condition keys the video reads in this block
        kv_c = 0 if cached else nc  # condition tokens projected to queries/keys/values here
        upd_c = 0 if i == last else kv_c  # condition tokens with attention output, text and FFN
        linear = 2 * nv * (6 * d * d + 2 * d * f) + 2 * kv_c * 3 * d * d + 2 * upd_c * (3 * d * d + 2 * d * f)
        linear += 2 * text_tokens * 2 * d * d  # text keys/values of the cross-attention
        attn = 4 * nv * (nv + nc) * d
        if upd_c:
            attn += sum(4 * c * c * d for c in segs) if cfg.attention == "isolated" else 4 * upd_c * (nv + nc) * d
        cross = 4 * (nv + upd_c) * text_tokens * d
        total += linear + attn + cross
    return float(total)
