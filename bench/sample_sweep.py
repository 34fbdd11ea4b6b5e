"""Sampler settings of a checkpoint scored on the validation worlds (issue #14): steps x guidance x text guidance x
the guidance interval (guidance only at flow times t >= guidance_min_t: the later steps run one branch, not two).

A weak model's samples can be hurt by its sampler (strong guidance over-sharpens and saturates; few steps blur).
Each setting generates the same validation worlds (fulldit/train/validate.py: every condition + first frame, and
the caption alone) from the same seeds, so the rows differ only in the sampler. Never FullBench's seeds; with
`--first-world 1000` not the worlds training validates on either (a sampler chosen there is not tuned to them).

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
    p.add_argument("--shift", type=float, nargs="+", help="the sampling times' shift (default: the checkpoint's)")
    p.add_argument("--first-world", type=int, default=0, help="validation worlds from this index on (default 0)")
    args = p.parse_args()
    pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device)
    s = pipe.config.sample
    clips = validation_clips(args.clips, s.frames, s.height, s.width, args.device, args.first_world)
    grid = itertools.product(
        args.steps or [s.steps],
        args.guidance or [s.guidance],
        args.text_guidance or [s.text_guidance],
        args.guidance_min_t or [s.guidance_min_t],
        args.shift or [s.shift],
    )
    for steps, guidance, text_guidance, min_t, shift in grid:
        start = time.perf_counter()
        sampler = dict(steps=steps, guidance=guidance, text_guidance=text_guidance, guidance_min_t=min_t, shift=shift)
        scores = validate(pipe, clips, **sampler)
        seconds = round(time.perf_counter() - start, 1)
        row = {"checkpoint": args.checkpoint, "clips": len(clips), "first_world": args.first_world, **sampler,
               **{k: round(v, 3) for k, v in scores.items()}, "seconds": seconds}  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
