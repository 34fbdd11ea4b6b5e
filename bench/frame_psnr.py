"""PSNR of each generated frame after a given first frame, against copying that frame (issue #14, "frame 1").

With a temporal patch of 2, frame 1 shares its token with the given frame 0: the one frame whose content is
nearly known, and the one the README command's preview shows drifting from it. For every-condition samples of the
validation worlds (caption + camera + references + depth + first frame, the checkpoint's sampler; never FullBench's
seeds) this prints, per world and on average, the PSNR of frames 1..F-1 against the truth next to the PSNR of
frame 0 copied into them: a model that reads its first frame should beat the copy most where the copy is best.

    python bench/frame_psnr.py --checkpoint checkpoints/default --clips 8 --device cpu
"""

from __future__ import annotations

import argparse
import json

import torch

from fulldit.eval.video_metrics import psnr
from fulldit.generate import Pipeline
from fulldit.train.validate import all_request, validation_clips


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/default")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device)
    s = pipe.config.sample
    generated, copied = [], []
    for clip in validation_clips(args.clips, s.frames, s.height, s.width, args.device):
        video = pipe.generate(all_request(pipe, clip)).cpu()
        generated.append([psnr(video[i : i + 1], clip.video[i : i + 1]) for i in range(1, s.frames)])
        copied.append([psnr(clip.video[:1], clip.video[i : i + 1]) for i in range(1, s.frames)])
        row = {"seed": clip.meta["seed"], "generated": generated[-1], "frame0_copied": copied[-1]}
        print(json.dumps({k: [round(x, 2) for x in v] if isinstance(v, list) else v for k, v in row.items()}))

    def mean(rows: list[list[float]]) -> list[float]:
        return [round(sum(col) / len(col), 2) for col in zip(*rows)]

    below = sum(g[0] < c[0] for g, c in zip(generated, copied))
    print(json.dumps({"checkpoint": args.checkpoint, "clips": len(generated), "generated": mean(generated),
                      "frame0_copied": mean(copied), "frame1_below_copy": below}))  # fmt: skip


if __name__ == "__main__":
    main()
