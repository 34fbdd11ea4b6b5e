"""Which of the caption's statements a checkpoint renders, per attribute group, under several guidance settings.

FullBench's per-group table (`fulldit eval`) reads the checkpoint's own sampler; this generates one combination's
cases with every (guidance, text guidance) pair given, so a group the model loses can be told apart from one the
guidance loses. Prints one line per setting and writes them as JSON lines.

    python bench/attribute_groups.py --bench BENCH --combo camera+identity+depth --cases 8 --device cpu \
        --settings 3,3 1,1 3,6 --out groups.jsonl
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fulldit.eval.attributes import GROUPS, AttributeNet
from fulldit.eval.fullbench import load_bench, request_fields
from fulldit.generate import Pipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/default")
    p.add_argument("--bench", required=True, help="a FullBench-Synth folder (fulldit synth --bench)")
    p.add_argument("--combo", default="camera+identity+depth")
    p.add_argument("--variant", default="given", help="given, withheld, text-only, ... (fullbench.request_fields)")
    p.add_argument("--cases", type=int, default=8)
    p.add_argument("--settings", nargs="+", default=["3,3", "1,1"], help="guidance,text_guidance pairs")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=None, help="JSON lines, one per setting")
    args = p.parse_args()
    pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device)
    reader = AttributeNet.from_file(device=args.device)
    _, cases = load_bench(args.bench, [args.combo], args.cases)
    cases = [c for c in cases if c.combo == args.combo][: args.cases]
    names = [*GROUPS, "mean"]
    rows = []
    truth = np.mean(
        [[s[n] for n in names] for s in (reader.caption_scores(c.clip.video, c.clip.meta)[1] for c in cases)], 0
    )
    print(f"ground truth ({len(cases)} cases): " + " ".join(f"{n} {v:.3f}" for n, v in zip(names, truth)), flush=True)
    for setting in args.settings:
        guidance, text_guidance = (float(x) for x in setting.split(","))
        start, scores = time.perf_counter(), []
        for case in cases:
            video = pipe.generate(**request_fields(case, args.variant), guidance=guidance, text_guidance=text_guidance)
            scores.append([reader.caption_scores(video.cpu(), case.clip.meta)[1][n] for n in names])
        mean = np.mean(scores, 0)
        row = {"guidance": guidance, "text_guidance": text_guidance, "combo": args.combo, "variant": args.variant,
               "cases": len(cases), **{n: float(v) for n, v in zip(names, mean)},
               **{f"{n}_gt": float(v) for n, v in zip(names, truth)}}  # fmt: skip
        rows.append(row)
        shown = " ".join(f"{n} {v:.3f}" for n, v in zip(names, mean))
        print(
            f"guidance {guidance:g} text {text_guidance:g}: {shown} ({time.perf_counter() - start:.0f} s)", flush=True
        )
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
