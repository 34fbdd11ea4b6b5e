"""The FullBench report: report.md (a table per combination, the condition effect table, the caption attributes,
the protocol), plots (matplotlib .png) and a video grid per combination (.mp4: ground truth beside each generated
variant)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fulldit.atomic import atomic_path
from fulldit.video_io import read_video, write_video

COLUMNS = [
    "psnr", "ssim", "rot_err", "trans_err", "cammc", "sfm_failed", "flow_epe", "flow_dir_cos", "depth_inv_mae",
    "depth_abs_rel", "depth_margin", "identity", "identity_margin", "identity_features", "clip_text",
    "first_frame_psnr", "continuation_psnr", "dynamic_degree", "smoothness",
]  # fmt: skip
TRUST = (
    "Camera numbers come from structure-from-motion on the generated frames. On real RealEstate10K clips the same "
    "estimator reached RotErr 0.12 at 384x256 but 0.57 at 128x128 and failed on 4 of 10 clips at 64x64 "
    "(docs/findings.md): trust camera numbers at 128x128 and above, compare them only between runs at one "
    "resolution, and read them next to the estimator's own error on the ground-truth videos of the same benchmark "
    "(`fulldit eval --videos BENCH --bench BENCH`), which bounds what any model can score."
)


def _fmt(x: Any) -> str:
    if isinstance(x, dict):
        m, s = x.get("mean", float("nan")), x.get("std", float("nan"))
        return "–" if not math.isfinite(m) else f"{m:.3g} ± {s:.2g}"
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


def _wins(row: dict, name: str) -> str:
    return f"{row[f'wins_{name}']}/{row[f'pairs_{name}']}" if f"wins_{name}" in row else "–"


def _attribute_section(attributes: dict | None) -> list[str]:
    """Text adherence and realism: the caption-attribute classifier's accuracy and Fréchet distance."""
    if not attributes:
        return []
    lines = ["## Caption attributes", "", "What the caption states (shapes, colours, patterns, walls, floor, camera "
             "move) read back from each video by the attribute classifier: its accuracy on the generated videos and "
             "on the ground truth of the same cases (the ceiling), and the Fréchet distance between the classifier's "
             "features of the generated and the ground-truth videos (– with fewer than 2 cases).", "",
             "| combination | variant | accuracy | ground truth | generated / GT | Fréchet distance | n |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    rows = [(combo, v, r) for combo, table in attributes.get("combos", {}).items() for v, r in table.items()]
    rows += [("all", v, r) for v, r in attributes.get("all", {}).items()]
    for combo, variant, r in rows:
        lines.append(
            f"| {combo} | {variant} | {_fmt(r['accuracy'])} | {_fmt(r['accuracy_gt'])} | {_fmt(r['ratio'])} | "
            f"{_fmt(r.get('frechet'))} | {r['n']} |"
        )
    pooled = {v: r for v, r in attributes.get("all", {}).items() if r.get("groups")}
    if pooled:  # which of the caption's statements each variant gets right, over all its cases
        names = list(next(iter(pooled.values()))["groups"])
        lines += ["", "Per attribute group, all cases: generated accuracy / ground truth's (the ratio).", "",
                  "| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]  # fmt: skip
        for variant, r in pooled.items():
            cells = [r["groups"][n] for n in names]
            shown = [f"{_fmt(c['accuracy'])} / {_fmt(c['accuracy_gt'])} ({_fmt(_ratio(c))})" for c in cells]
            lines.append(f"| {variant} | " + " | ".join(shown) + " |")
    return [*lines, ""]


def _ratio(cell: dict) -> float | None:
    return cell["accuracy"] / cell["accuracy_gt"] if cell["accuracy_gt"] else None


def markdown(metrics: dict) -> str:
    lines = [f"# FullBench report ({metrics.get('version')})", ""]
    src = metrics.get("source", {})
    lines += [f"Source: {', '.join(f'{k} `{v}`' for k, v in src.items())}. Clips of {metrics.get('frames')} frames "
              f"at {metrics['size'][1]}x{metrics['size'][0]}. Values are mean ± std over cases.", ""]  # fmt: skip
    if metrics.get("effect"):
        lines += ["## Condition effect", "", "Each condition's metric with the condition given and withheld, on the "
                  "same cases and seeds (the camera also with another case's path).", "",
                  "Paired columns: per case, given minus withheld (or minus another path), mean ± std over cases, and "
                  "in how many cases the given condition scores better.", "",
                  "| condition | metric | better | given | withheld | other path | given / withheld | "
                  "given − withheld | better in | given − other path | better in | n |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in metrics["effect"]:
            lines.append(
                f"| {r['condition']} | {r['metric']} | {r['better']} | {_fmt(r['given'])} | "
                f"{_fmt(r['withheld'])} | {_fmt(r.get('other_path'))} | {_fmt(r['ratio'])} | "
                f"{_fmt(r.get('diff_withheld'))} | {_wins(r, 'withheld')} | "
                f"{_fmt(r.get('diff_other_path'))} | {_wins(r, 'other_path')} | {r['n']} |"
            )
        lines.append("")
    for combo, table in metrics["combos"].items():
        cols = [c for c in COLUMNS if any(c in row for row in table.values())]
        lines += [f"## {combo}", "", "| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for variant, row in table.items():
            lines.append(f"| {variant} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
        lines.append("")
    lines += _attribute_section(metrics.get("attributes"))
    lines += ["## Protocol", "", metrics["protocol"]["camera"], "", TRUST, ""]
    return "\n".join(lines)


def plot_effects(metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = metrics.get("effect", [])
    if not rows:
        return
    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 3), squeeze=False)
    for ax, r in zip(axes[0], rows):
        names = ["given", "withheld"] + (["other"] if "other_path" in r else [])
        values = [r["given"], r["withheld"]] + ([r["other_path"]] if "other_path" in r else [])
        ax.bar(
            names,
            [v if math.isfinite(v) else 0 for v in values],
            color=["tab:green", "tab:gray", "tab:red"][: len(values)],
        )
        ax.set_title(f"{r['condition']}\n{r['metric']} ({r['better']} better)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def video_grid(out: Path, combo: str, cases: list, variants: Callable[[Any], list[str]], max_cases: int = 4) -> None:
    """OUT/grids/<combo>.mp4: one row per case: ground truth, then each of the case's `variants(case)` in order."""
    rows = []
    for case in cases[:max_cases]:
        tiles = [case.clip.video]
        for variant in variants(case):
            path = out / "videos" / case.id / f"{variant}.mp4"
            if path.is_file():
                tiles.append(read_video(path)[: case.clip.num_frames])
        if len(tiles) > 1:
            rows.append(torch.cat(tiles, dim=3))
    if rows:
        width = max(r.shape[3] for r in rows)
        rows = [torch.nn.functional.pad(r, (0, width - r.shape[3])) for r in rows]
        write_video(out / "grids" / f"{combo.replace('+', '_')}.mp4", torch.cat(rows, dim=2), fps=8)


def write_report(out: Path, metrics: dict, by_combo: dict, variants: Callable[[Any], list[str]]) -> None:
    """report.md, effects.png and a video grid per combination; `variants(case)` names a case's generated videos."""
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(markdown(metrics))
    plot_effects(metrics, out / "effects.png")
    for combo, cases in by_combo.items():
        video_grid(out, combo, cases, variants)
