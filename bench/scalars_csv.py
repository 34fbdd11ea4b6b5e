"""A training run's tensorboard scalars as one small CSV (run,tag,step,wall_time,value), for the model card's curves.

A GPU machine's run folder cannot travel whole (its checkpoints are large) and phase 8 of the default lost its
event files that way; this CSV is a few kB and is what bench/loss_curve.py and the results folders read. Uses
tensorboard's own reader (EventAccumulator), every scalar tag, every logged step.

    python bench/scalars_csv.py runs/s16 --name s16-phase9 --out bench/results/.../scalars.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from fulldit.atomic import atomic_path
from fulldit.errors import InputError


def scalar_rows(run: str | Path, name: str) -> list[tuple[str, str, int, float, float]]:
    """(name, tag, step, wall_time, value) of every scalar under RUN/logs (or RUN itself), ordered by tag and step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(run)
    logs = root / "logs" if (root / "logs").is_dir() else root
    files = sorted(logs.rglob("events.out.tfevents.*"))
    if not files:
        raise InputError(f"{run}: no tensorboard event files (looked in {logs})")
    rows = []
    for folder in sorted({f.parent for f in files}):
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
        events.Reload()
        for tag in events.Tags()["scalars"]:
            rows += [(name, tag, e.step, e.wall_time, e.value) for e in events.Scalars(tag)]
    return sorted(rows, key=lambda r: (r[1], r[2], r[3]))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a `fulldit train --out` folder (its logs/) or a folder of event files")
    p.add_argument("--name", default="run", help="the CSV's run column (e.g. s16-phase9)")
    p.add_argument("--out", help="CSV file to write (default: stdout)")
    args = p.parse_args(argv)
    rows = scalar_rows(args.run, args.name)
    header = ["run", "tag", "step", "wall_time", "value"]
    if not args.out:
        csv.writer(sys.stdout).writerows([header, *rows])
        return 0
    with atomic_path(args.out) as tmp, open(tmp, "w", newline="") as f:  # never a half-written CSV
        csv.writer(f).writerows([header, *rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
