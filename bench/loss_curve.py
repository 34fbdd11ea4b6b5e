"""The shipped default model's training loss across its restarts, for its model card (issue #14, item 2).

Reads the logged scalars of every phase (bench/results/train-synth-s/scalars.csv: synth-s phases 1-3;
bench/results/default-model-h200-2026-12-01/scalars.csv: run `deep`, phase 5 after growing to 16 blocks;
bench/results/default-phase{6,7,8}-h200-2026-12-01/scalars.csv: phases 6-8, bench/continue_default.sh; phase 8's
from its progress bar's per-step loss averaged over 25 steps, as its tensorboard events were not brought back;
bench/results/default-phase9-h200-2026-12-02/scalars-b.csv: phase 9, the flow.shift 6 arm of its A/B;
bench/results/default-phase10-h200-2026-12-02/scalars-arm2.csv: phase 10, the flow.shift 12 arm of its A/B;
bench/results/default-phase11-h200-2026-12-02/scalars-arm2.csv: phase 11, the arm with the text encoder grown;
bench/results/default-phase12-h200-2026-12-02/scalars-arm2.csv: phase 12, whole captions and 30% text-only steps) and
draws loss/all against the optimizer steps the weights have seen, one colour per phase, a line at each restart.
Phases differ in batch size (32, then 64) and timestep shift (1 in phase 1, 3 in phases 2-8, 6 in phase 9, 12 in
phases 10-12), which moves the loss level (a larger shift trains more at high noise, where the velocity error is
smaller).

    python bench/loss_curve.py --out checkpoints/default/loss.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# (csv, run name prefix, label, steps of the weights before the phase; phase 1's run 2 resumed run 1 at step 500)
PHASES = [
    ("train-synth-s/scalars.csv", "phase1-run1", "1: synth-s from scratch, shift 1, batch 32", 0, 500),
    ("train-synth-s/scalars.csv", "phase1-run2", "1 (resumed at 500)", 0, None),
    ("train-synth-s/scalars.csv", "phase2", "2: --init 1, shift 3", 2143, None),
    ("train-synth-s/scalars.csv", "phase3", "3: --init 2, reuse 2", 2642, None),
    ("default-model-h200-2026-12-01/scalars.csv", "deep", "5: grown to 16 blocks, batch 64", 3798, None),
    ("default-phase6-h200-2026-12-01/scalars.csv", "s16-phase6", "6: --init 5, 1,000 steps", 4001, None),
    ("default-phase7-h200-2026-12-01/scalars.csv", "s16-phase7", "7: --init 6, first frame 30%", 5001, None),
    ("default-phase8-h200-2026-12-01/scalars.csv", "s16-phase8", "8: --init 7, 1,183 steps", 6099, None),
    ("default-phase9-h200-2026-12-02/scalars-b.csv", "s16-b", "9: --init 8, shift 6, 493 steps", 7282, None),
    ("default-phase10-h200-2026-12-02/scalars-arm2.csv", "arm-2", "10: --init 9, shift 12, 301 steps", 7775, None),
    ("default-phase11-h200-2026-12-02/scalars-arm2.csv", "arm-2", "11: --init 10, text encoder 4 layers", 8076, None),
    ("default-phase12-h200-2026-12-02/scalars-arm2.csv", "arm-2", "12: --init 11, whole captions", 8609, None),
]


def curve(path: Path, prefix: str, until: int | None) -> tuple[list[int], list[float]]:
    rows = [r for r in csv.DictReader(path.open()) if r["run"].startswith(prefix) and r["tag"] == "loss/all"]
    pts = sorted((int(r["step"]), float(r["value"])) for r in rows if until is None or int(r["step"]) <= until)
    return [s for s, _ in pts], [v for _, v in pts]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="checkpoints/default/loss.png")
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # one colour per phase: more phases than the default cycle has
    for name, prefix, label, offset, until in PHASES:
        steps, loss = curve(RESULTS / name, prefix, until)
        ax.plot([offset + s for s in steps], loss, label=label, lw=1.2)
        if offset:
            ax.axvline(offset, color="grey", lw=0.6, ls=":")
    ax.set(xlabel="optimizer steps the weights have seen", ylabel="velocity MSE (all condition subsets)", yscale="log")
    ax.set_title("checkpoints/default: loss across restarts (dotted: a restart from bf16 weights)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
