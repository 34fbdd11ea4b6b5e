"""Sampler settings of a checkpoint scored on the validation worlds (issue #14): steps x guidance x text guidance x
the guidance interval (guidance only at flow times t >= guidance_min_t: the later steps run one branch, not two).

A weak model's samples can be hurt by its sampler (strong guidance over-sharpens and saturates; few steps blur).
Each setting generates the same validation worlds (fulldit/train/validate.py: every condition + first frame, and
the caption alone) from the same seeds, so the rows differ only in the sampler. Never FullBench's seeds.

    python bench/sample_sweep.py --checkpoint checkpoints/default --clips 32 --device cuda \
        --steps 12 25 --guidance 1 2 3 --text-guidance 1 3 --guidance-min-t 0 0.6
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from fulldit.generate import Pipeline
from fulldit.train.validate import validate, validation_clips


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/default")
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    # each setting not given is the checkpoint's own (its config's sample section, as training's validation uses)
    p.add_argument("--steps", type=int, nargs="+")
    p.add_argument("--guidance", type=float, nargs="+")
    p.add_argument("--text-guidance", type=float, nargs="+")
    p.add_argument("--guidance-min-t", type=float, nargs="+")
    args = p.parse_args()
    pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device)
    s = pipe.config.sample
    clips = validation_clips(args.clips, s.frames, s.height, s.width, args.device)
    grid = itertools.product(
        args.steps or [s.steps],
        args.guidance or [s.guidance],
        args.text_guidance or [s.text_guidance],
        args.guidance_min_t or [s.guidance_min_t],
    )
    for steps, guidance, text_guidance, min_t in grid:
        start = time.perf_counter()
        sampler = dict(steps=steps, guidance=guidance, text_guidance=text_guidance, guidance_min_t=min_t)
        scores = validate(pipe, clips, **sampler)
        seconds = round(time.perf_counter() - start, 1)
        row = {"checkpoint": args.checkpoint, "clips": len(clips), **sampler,
               **{k: round(v, 3) for k, v in scores.items()}, "seconds": seconds}  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
