"""The default model's PSNR bars on FullBench-Synth worlds (issue #14): generation with every condition.

For the first N camera+identity+depth cases of a benchmark folder, generate (a) with the caption, camera,
references, depth and the first frame and score PSNR on the frames after the first, and (b) from the caption
alone, scored on every frame (fulldit/train/validate.py does both). Prints one JSON line and writes it to --out.

    python bench/bars.py --checkpoint checkpoints/default --bench data/fullbench-synth --cases 32 --out bars.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fulldit.eval.fullbench import load_bench
from fulldit.generate import Pipeline
from fulldit.train.validate import validate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--bench", required=True)
    p.add_argument("--cases", type=int, default=32)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    _, cases = load_bench(args.bench, ["camera+identity+depth"], args.cases)
    pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device)
    t0 = time.perf_counter()
    scores = validate(pipe, [c.clip for c in cases])
    row = {"checkpoint": args.checkpoint, "cases": len(cases), **scores, "seconds": time.perf_counter() - t0}
    print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
