"""Where a checkpoint's error comes from (issue #14): the PSNR of its one-step clean-clip estimate at each noise level.

A sample's PSNR against the ground truth mixes two failures: the network cannot say what the clip is even when
little noise is left (detail: low t), or it decides the layout and motion wrong from pure noise (structure: high t),
and the sampler carries that decision to the end. This script noises the ground truth of validation worlds
(fulldit/train/validate.py's, never trained on) to each t, asks the network once for the clean clip (its x0
estimate; for a velocity model x_t - t v) and scores it against the truth on the frames after the first, in the two
validation tasks: `all` (caption + camera + references + depth + first frame) and `text` (the caption alone, every
frame). One forward per clip and t, the conditional branch only (no guidance). For scale it also prints the PSNR of
two trivial estimates: each clip's mean colour, and frame 0 copied into every frame.

    python bench/x0_error.py --checkpoint checkpoints/default --clips 8 --t 0.05 0.2 0.4 0.6 0.8 0.95 1.0
"""

from __future__ import annotations

import argparse
import json

import torch

from fulldit.eval.video_metrics import psnr
from fulldit.generate import Pipeline
from fulldit.train.validate import validation_clips, x0_estimate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/default")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--t", type=float, nargs="+", default=[0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device)
    s = pipe.config.sample
    clips = validation_clips(args.clips, s.frames, s.height, s.width, args.device)
    mean_colour = [psnr(c.video.mean((0, 2, 3), keepdim=True).expand_as(c.video)[1:], c.video[1:]) for c in clips]
    frame0 = [psnr(c.video[:1].expand_as(c.video)[1:], c.video[1:]) for c in clips]
    base = {"checkpoint": args.checkpoint, "clips": len(clips)}
    print(json.dumps({**base, "mean_colour": round(sum(mean_colour) / len(clips), 2),
                      "frame0_copied": round(sum(frame0) / len(clips), 2)}), flush=True)  # fmt: skip
    for t in args.t:
        row = {**base, "t": t}
        for task in ("all", "text"):
            scores = []
            for clip in clips:
                est = x0_estimate(pipe, clip, t, task)
                scores.append(psnr(est[1:], clip.video[1:]) if task == "all" else psnr(est, clip.video))
            row[f"x0_psnr_{task}"] = round(sum(scores) / len(scores), 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
