"""The real training loop against its own data-free twin: what rendering costs, compile, memory (issue #14, item 0).

For each model config, `fulldit train` (fulldit.train.loop.train, synthetic world rendered on the GPU in the
background) runs twice with the same settings: once as it is, once with the data made free (every batch group
is the first rendered group again, so no rendering, planning or encoding happens after it). Throughput ratio
real / free is what the data pipeline costs the loop. Both report samples/s and model TFLOP/s measured over the
steps after warm-up (the first `--warmup` steps include compilation), peak GPU memory, and how many graphs
torch.compile built after warm-up (recompilations: should be 0).

A memory probe runs the step on clips of 16 and 32 frames (2x the tokens): peak activation memory growing 2x
means memory linear in the sequence (fused attention kernels), 4x would mean a stored attention matrix.

    python bench/train_loop.py --configs configs/synth-s.yaml configs/synth-m.yaml --steps 60 --warmup 20
    python bench/train_loop.py --configs configs/tiny.yaml --device cpu --steps 4 --warmup 2 --small   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters

from fulldit.train import loop


def run(config: str, overrides: list[str], steps: int, warmup: int, device: str, free_data: bool) -> dict:
    """Train `steps` steps; samples/s and TFLOP/s over the steps after `warmup`, peak memory, graphs built after."""
    marks: dict[int, tuple[float, int]] = {}
    real_step, real_to_batch = loop.micro_step, loop.to_batch
    flops = [0.0]
    first: list = []

    def timed_step(*args, **kwargs):
        out = real_step(*args, **kwargs)
        step = args[6]
        if step == warmup and step not in marks:
            if device == "cuda":
                torch.cuda.synchronize()
            marks[step] = (time.perf_counter(), counters["stats"]["unique_graphs"])
        if step >= warmup:
            flops[0] += 3 * out[2]
        return out

    def cached_batch(items, cfg, dev):
        if not first:
            first.append(real_to_batch(items, cfg, dev))
        return first[0]

    loop.micro_step = timed_step
    if free_data:
        loop.to_batch = cached_batch
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            args = [*overrides, f"train.steps={steps}", f"train.save_every={steps}", "train.log_every=1000000"]
            loop.train(config, str(Path(tmp) / "run"), args, device=device)
            end = time.perf_counter()
    finally:
        loop.micro_step, loop.to_batch = real_step, real_to_batch
    t0, graphs = marks[warmup]
    cfg = loop.load_train_config(config, overrides)[1]
    timed = steps - warmup
    # the loop's end saves a checkpoint and exports the model: measure up to the last step instead
    elapsed = end - t0 - _EXPORT.pop("s", 0.0)
    return {
        "config": config,
        "data": "free" if free_data else "rendered",
        "steps_timed": timed,
        "samples_per_s": timed * cfg.batch_size / elapsed,
        "tflops": flops[0] / elapsed / 1e12,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
        "graphs_after_warmup": counters["stats"]["unique_graphs"] - graphs,
    }


_EXPORT: dict[str, float] = {}  # seconds spent in checkpoints and exports since the last `run` read them


def _time_exports() -> None:
    """Time the end-of-run checkpoint + export, which `run` subtracts (it is not training throughput)."""
    real_save, real_export = loop.save_checkpoint, loop.export_ema

    def save(*args, **kwargs):
        t = time.perf_counter()
        out = real_save(*args, **kwargs)
        _EXPORT["s"] = _EXPORT.get("s", 0.0) + time.perf_counter() - t
        return out

    def export(*args, **kwargs):
        t = time.perf_counter()
        out = real_export(*args, **kwargs)
        _EXPORT["s"] = _EXPORT.get("s", 0.0) + time.perf_counter() - t
        return out

    loop.save_checkpoint, loop.export_ema = save, export


def memory_probe(config: str, overrides: list[str], device: str, frames: tuple[int, ...] = (16, 32)) -> list[dict]:
    """Peak memory of training steps (free data) on clips of each frame count."""
    rows = []
    for f in frames:
        if device == "cuda":
            torch.cuda.empty_cache()
        row = run(config, [*overrides, f"train.data.frames={f}", f"sample.frames={f}"], 4, 2, device, True)
        rows.append({"frames": f, "peak_gib": row["peak_gib"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["configs/synth-s.yaml"])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--device", default="cuda")
    p.add_argument("--small", action="store_true", help="4-frame 32x32 clips, 2 blocks (CPU smoke run)")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("overrides", nargs="*", help="extra dotted overrides for every run, e.g. train.compile=false")
    args = p.parse_args()
    extra = list(args.overrides)
    if args.small:
        extra += ["train.batch_size=2", "train.data.frames=4", "train.data.height=32", "train.data.width=32",
                  "sample.frames=4", "sample.height=32", "sample.width=32", "model.layers=2", "train.data.workers=0",
                  "train.precision=fp32"]  # fmt: skip
    _time_exports()
    rows, memory = [], {}
    for config in args.configs:
        for free in (False, True):
            rows.append(run(config, extra, args.steps, args.warmup, args.device, free))
            print(json.dumps(rows[-1]), flush=True)
        if not args.no_memory:
            memory[config] = memory_probe(config, extra, args.device)
            print(json.dumps({"config": config, "memory": memory[config]}), flush=True)
    print("\n| config | data | samples/s | TFLOP/s | real / free | peak GiB | graphs built after warm-up |")
    print("|---|---|---|---|---|---|---|")
    for real, free in zip(rows[::2], rows[1::2]):
        for r in (real, free):
            ratio = real["samples_per_s"] / free["samples_per_s"] if r is real else 1.0
            print(f"| {r['config']} | {r['data']} | {r['samples_per_s']:.1f} | {r['tflops']:.1f} | {ratio:.2f} | "
                  f"{r['peak_gib']:.1f} | {r['graphs_after_warmup']} |")  # fmt: skip
    for config, probe in memory.items():
        a, b = probe[0], probe[-1]
        growth, tokens = b["peak_gib"] / a["peak_gib"], b["frames"] / a["frames"]
        print(f"memory {config}: {a['frames']} frames {a['peak_gib']:.2f} GiB, {b['frames']} frames "
              f"{b['peak_gib']:.2f} GiB: x{growth:.2f} for x{tokens:.0f} tokens")  # fmt: skip
    out = os.environ.get("OUT")
    if out:
        Path(out, "train_loop.json").write_text(json.dumps({"runs": rows, "memory": memory}, indent=1))


if __name__ == "__main__":
    main()
