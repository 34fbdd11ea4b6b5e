"""What geometry alone gives on the `all` task (issue #14): the first frame reprojected through the true depth and
camera into every later frame, scored like validation's `psnr_all` (PSNR on frames 1-15 against the truth), beside
the first frame copied into every frame and each clip's mean colour. No network: a floor any model given depth,
camera and first frame should clear, and the input `model.depth.reproject` hands the depth condition.

Pixels the reprojection cannot fill (disoccluded, outside frame 0, or hidden in it) take frame 0's mean colour.
Moving objects are reprojected as if they stood still. A world whose camera and objects all stand still scores the
PSNR cap (100 dB) for a copy of frame 0 and dominates a mean (4 of the 64 worlds from 3000): `moving` reports the
means over the other worlds as well, where a model's mean over all worlds is an upper bound of its own.

    python bench/reprojection_baseline.py --clips 64 --first-world 3000    # the worlds sample_sweep scored
"""

from __future__ import annotations

import argparse
import json

import torch

from fulldit.conditions.reproject import reproject_first_frame
from fulldit.eval.video_metrics import PSNR_CAP, psnr
from fulldit.train.validate import validation_clips


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--first-world", type=int, default=0, help="validation worlds from this index on")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args()
    scores: dict[str, list[float]] = {"reprojection": [], "frame0_copied": [], "mean_colour": [], "valid": []}
    for clip in validation_clips(args.clips, args.frames, args.size, args.size, first=args.first_world):
        video, valid = reproject_first_frame(clip.video[0], clip.depth, clip.camera)
        first = clip.video[0]
        filled = torch.where(valid[:, None], video.permute(1, 0, 2, 3), first.mean((1, 2), keepdim=True))
        later = clip.video[1:]
        scores["reprojection"].append(psnr(filled[1:], later))
        scores["frame0_copied"].append(psnr(first.expand_as(later), later))
        scores["mean_colour"].append(psnr(clip.video.mean((0, 2, 3), keepdim=True).expand_as(later), later))
        scores["valid"].append(float(valid[1:].float().mean()))
    row = {"clips": args.clips, "first_world": args.first_world, "frames": args.frames, "size": args.size}
    row |= {k: round(sum(v) / len(v), 3) for k, v in scores.items()}
    moving = [i for i, copied in enumerate(scores["frame0_copied"]) if copied < PSNR_CAP]
    means = {k: round(sum(v[i] for i in moving) / len(moving), 3) for k, v in scores.items()}
    row["moving"] = {"clips": len(moving)} | means
    print(json.dumps(row))


if __name__ == "__main__":
    main()
