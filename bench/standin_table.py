"""Issue #15's stand-in backbone comparison: the text-only drift, CPU scoring, the table.

bench/standin_backbone.sh runs the chain on a GPU (pretrain a text-to-video backbone, export it as Wan2.1's release,
convert it back with the conditions, gated or with `--gate none`, fine-tune six variants, generate FullBench videos
with `fulldit eval --generate-only`); this script holds the pieces that are not `fulldit` commands:

    textonly --bench B --run CKPT OUT [--run ...] [--reference REF] [--save-clips]
                           text-only clips of the first --clips benchmark cases (caption, seed as FullBench's), with
                           --config's sampling and a float32 VAE decoder (--codec-dtype) for every checkpoint alike,
                           so that only the transformers differ; OUT/textonly.json holds their PSNR against the ground
                           truth and, with --reference (another run's OUT, with its clips saved), the drift: PSNR
                           against the reference's clips of the same prompts and seeds (100 = equal)
    score --bench B REPORT [REPORT ...]
                           `fulldit eval --videos REPORT/videos --out REPORT` for each report (its cases and
                           combinations): scores the videos `--generate-only` wrote, without the checkpoint (the GPU
                           run's are not brought back; SfM needs pycolmap: run on the CPU machine)
    base WORK              WORK/base/part-aa, -ab, ...: the stand-in's Wan2.1 release (WORK/wan: transformer, vae/,
                           text_encoder/, tokenizer/) as one tar in 15 MiB parts, the VAE's weights cast to bf16
                           (~180 MB: brought home over several device calls, `cat part-* | tar -xf - -C WORK2` puts
                           it in a later run's folder, whose chain then starts at the conversions)
    table WORK             the BENCHMARKS.md table from WORK/eval/<variant>/step<S>/{metrics.json,textonly/}:
                           per variant and step, the camera's flow error vs another path, depth's error vs without,
                           the PSNR each gains over those arms, the gates, the text-only drift; WORK/table.md and
                           WORK/table.jsonl

Variant folders are named `<gate>-x<new-module lr scale>` (nogate-x30, separate-x1, lse-x30, lse-open-x1, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save, save_file

from fulldit.atomic import atomic_path
from fulldit.config import load_config
from fulldit.errors import InputError
from fulldit.eval.fullbench import Case, load_bench
from fulldit.eval.video_metrics import PSNR_CAP, psnr

GATES = ("nogate", "separate", "lse", "lse-open")  # table order: (a) no gate, (b) separate softmax, (c) log-sum-exp,
# (c) with its gates starting ajar (`convert --gate-init`: closed gates pass the condition modules no gradient)
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "standin-fulldit.yaml"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


# -- textonly ---------------------------------------------------------------------------------------------------


def text_cases(bench: str | Path, combos: Sequence[str], count: int) -> list[Case]:
    """The first `count` cases of `combos`, taken in turn from each combination (their captions and seeds)."""
    _, chosen = load_bench(bench, list(combos), math.ceil(count / len(combos)))
    groups = [[c for c in chosen if c.combo == combo] for combo in combos]
    interleaved = [c for row in zip(*groups) for c in row] + [c for g in groups for c in g[min(map(len, groups)) :]]
    return interleaved[:count]


def gate_stats(model: torch.nn.Module) -> dict | None:
    """The condition gates, None without: as the model applies them (clamped to [0, 1]: mean, max, mean per block,
    share of heads open) and as stored (a gate pushed below 0 reads nothing, and the modules behind it learn nothing,
    until its straight-through gradient brings it back: raw min, mean |g|)."""
    raw = [b.cond_gate.detach().float() for b in model.blocks if b.cond_gate is not None]
    if not raw:
        return None
    r = torch.stack(raw)  # (blocks, heads)
    g = r.clamp(0, 1)
    return {"mean": float(g.mean()), "max": float(g.max()), "open": float((r > 0).float().mean()),
            "raw_min": float(r.min()), "raw_abs_mean": float(r.abs().mean()),
            "per_block": [round(float(v), 6) for v in g.mean(1)]}  # fmt: skip


def sampling_of(config: str | Path, steps: int | None) -> dict[str, float]:
    """The sampler every text-only clip uses, whatever each checkpoint's own defaults (the converted backbone carries
    Wan2.1's): --config's sample section, --steps overriding its steps."""
    s = load_config(config).sample
    return {"steps": steps or s.steps, "shift": s.shift, "guidance": s.guidance, "text_guidance": s.text_guidance}


@torch.no_grad()
def text_only_run(
    checkpoint: str | Path,
    out: str | Path,
    cases: list[Case],
    sampling: dict[str, float],
    device: str,
    reference: str | Path | None = None,
    save_clips: bool = False,
    fps: float = 16.0,
    codec_dtype: str | None = "float32",
) -> dict:
    """Generate the cases' text-only clips with `checkpoint`; write OUT/<case>.mp4 and OUT/textonly.json (and with
    `save_clips` OUT/clips.safetensors, uint8, for another run's --reference). Returns textonly.json's content."""
    from fulldit.codecs import build_codec
    from fulldit.generate import Pipeline
    from fulldit.video_io import write_video

    out = Path(out)
    ref = load_file(str(Path(reference) / "clips.safetensors")) if reference else None
    pipe = Pipeline.from_pretrained(checkpoint, device=device)
    if codec_dtype and pipe.config.codec.dtype != codec_dtype:  # one decoder for every run: the drift is the model's
        pipe.codec = build_codec(dataclasses.replace(pipe.config.codec, dtype=codec_dtype), device)
    clips, rows = {}, []
    for case in cases:
        clip = case.clip
        video = pipe.generate(prompt=clip.caption, frames=clip.num_frames, height=clip.video.shape[2],
                              width=clip.video.shape[3], seed=case.seed % 2**31, **sampling)  # fmt: skip
        q = (video.clamp(0, 1) * 255).round().to(torch.uint8)  # (F, 3, H, W): what a lossless video file holds
        clips[case.id] = q
        row = {"case": case.id, "seed": case.seed % 2**31, "psnr_gt": psnr(q.float() / 255, clip.video)}
        if ref is not None:
            if case.id not in ref:
                raise InputError(f"{reference}: has no clip of case {case.id}; make it with the same --bench/--clips")
            row["drift_psnr"] = psnr(q.float() / 255, ref[case.id].float() / 255)
        rows.append(row)
        write_video(out / f"{case.id}.mp4", q.float() / 255, fps=fps)
    info = {
        "checkpoint": str(checkpoint), "reference": str(reference) if reference else None, "sampling": sampling,
        "codec_dtype": str(getattr(pipe.codec, "dtype", "")).removeprefix("torch."),
        "gates": gate_stats(pipe.model), "clips": rows,
        "psnr_gt": sum(r["psnr_gt"] for r in rows) / len(rows),
        "drift_psnr": sum(r["drift_psnr"] for r in rows) / len(rows) if ref is not None else None,
        "drift_cap": PSNR_CAP,
    }  # fmt: skip
    if save_clips:
        with atomic_path(out / "clips.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in clips.items()}, str(tmp))
    write_json(out / "textonly.json", info)
    drift = "" if info["drift_psnr"] is None else f", drift {info['drift_psnr']:.2f} dB"
    print(f"{checkpoint}: {len(rows)} text-only clips, PSNR vs GT {info['psnr_gt']:.2f} dB{drift}", flush=True)
    return info


# -- score ------------------------------------------------------------------------------------------------------


def score_report(bench: str | Path, report: str | Path) -> dict:
    """Score what `fulldit eval --generate-only` wrote under REPORT/videos (its cases, every variant) with
    `fulldit eval --videos` (resumable: REPORT/scores kept); REPORT/metrics.json, returned."""
    from fulldit.eval.fullbench import run

    report = Path(report)
    _, cases = load_bench(bench)
    present = [c for c in cases if (report / "videos" / c.id).is_dir()]
    if not present:
        raise InputError(f"{report}: no videos/<case>/ of a case of {bench}")
    combos = sorted({c.combo for c in present})
    per_combo = max(sum(c.combo == combo for c in present) for combo in combos)
    metrics = run(bench, report, videos=report / "videos", cases=per_combo, combos=combos)
    print(f"{report}: {len(present)} cases scored", flush=True)
    return metrics


# -- base -------------------------------------------------------------------------------------------------------

PART_BYTES = 15 * 2**20  # the device returns files of at most 16 MiB


def pack_base(work: str | Path) -> list[Path]:
    """WORK/wan as WORK/base/part-*: a tar of the release with every floating tensor of vae/ in bf16 (the VAE is
    stored in fp32 and is most of the bytes), split into parts the device can return. Returns the parts."""
    import io
    import tarfile

    work = Path(work)
    wan = work / "wan"
    if not (wan / "config.json").is_file():
        raise InputError(f"{wan}: no Wan2.1 release here (config.json missing); run the chain to its export first")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(p for p in wan.rglob("*") if p.is_file()):
            name = str(path.relative_to(work))
            if path.suffix == ".safetensors" and path.relative_to(wan).parts[0] == "vae":
                data = {
                    k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(str(path)).items()
                }
                blob = save(data)
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
            else:
                tar.add(path, arcname=name)
    out = work / "base"
    out.mkdir(exist_ok=True)
    for old in out.glob("part-*"):
        old.unlink()
    data, parts = buffer.getvalue(), []
    for i in range(0, len(data), PART_BYTES):
        part = out / f"part-{chr(97 + i // PART_BYTES // 26)}{chr(97 + i // PART_BYTES % 26)}"
        with atomic_path(part) as tmp:
            tmp.write_bytes(data[i : i + PART_BYTES])
        parts.append(part)
    print(f"{out}: {len(parts)} parts, {len(data) / 2**20:.1f} MiB", flush=True)
    return parts


# -- table ------------------------------------------------------------------------------------------------------


def _effect(metrics: dict, metric: str) -> dict:
    return next((r for r in metrics.get("effect", []) if r["metric"] == metric), {})


def _psnr_gain(metrics: dict, combo: str, baseline: str) -> float | None:
    """PSNR against the ground truth of the clips given the combination's condition minus the baseline arm's (the
    other path, or withheld): the first sign that a condition acts, before a metric of its own moves."""
    arms = metrics.get("combos", {}).get(combo, {})
    given, base = (arms.get(a, {}).get("psnr", {}).get("mean") for a in ("given", baseline))
    return _delta(given, base)


def _ratio(a: float | None, b: float | None) -> float | None:
    ok = a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and b != 0
    return a / b if ok else None


def table_rows(work: str | Path) -> list[dict]:
    """One row per WORK/eval/<gate>-x<scale>/step<S>/ (either metrics.json or textonly/textonly.json present)."""
    work = Path(work)
    base_path = work / "eval" / "backbone" / "textonly" / "textonly.json"
    backbone = json.loads(base_path.read_text()) if base_path.is_file() else None
    rows = []
    for folder in sorted(work.glob("eval/*/step*")):
        variant, step = folder.parent.name, folder.name.removeprefix("step")
        name = re.fullmatch(r"(.+)-x([0-9.]+)", variant)
        if not (name and step.isdigit()):
            continue
        metrics_path, text_path = folder / "metrics.json", folder / "textonly" / "textonly.json"
        if not (metrics_path.is_file() or text_path.is_file()):
            continue
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        text = json.loads(text_path.read_text()) if text_path.is_file() else {}
        flow, rot, depth = (_effect(metrics, m) for m in ("flow_epe", "rot_err", "depth_inv_mae"))
        gates = text.get("gates") or {}
        row = {
            "variant": variant, "gate": name[1], "lr_scale": float(name[2]), "step": int(step),
            "gate_mean": gates.get("mean"), "gate_max": gates.get("max"), "gate_open": gates.get("open"),
            "gate_raw_abs_mean": gates.get("raw_abs_mean"),
            "flow_given": flow.get("given"), "flow_other_path": flow.get("other_path"),
            "flow_ratio": _ratio(flow.get("given"), flow.get("other_path")),
            "flow_wins": flow.get("wins_other_path"), "flow_pairs": flow.get("pairs_other_path"),
            "rot_ratio": _ratio(rot.get("given"), rot.get("withheld")),
            "depth_given": depth.get("given"), "depth_withheld": depth.get("withheld"),
            "depth_ratio": _ratio(depth.get("given"), depth.get("withheld")),
            "depth_wins": depth.get("wins_withheld"), "depth_pairs": depth.get("pairs_withheld"),
            "camera_psnr_gain": _psnr_gain(metrics, "camera", "other-path"),
            "depth_psnr_gain": _psnr_gain(metrics, "depth", "withheld"),
            "drift_psnr": text.get("drift_psnr"), "text_psnr_gt": text.get("psnr_gt"),
            "text_psnr_gt_delta": _delta(text.get("psnr_gt"), backbone and backbone.get("psnr_gt")),
            "cases": flow.get("n") or depth.get("n"), "text_clips": len(text.get("clips", [])),
        }  # fmt: skip
        rows.append(row)
    order = {g: i for i, g in enumerate(GATES)}
    return sorted(rows, key=lambda r: (order.get(r["gate"], len(order)), r["gate"], r["lr_scale"], r["step"]))


def _delta(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "–" if x is None or not math.isfinite(x) else format(x, fmt)


def _x(ratio: float | None) -> str:
    return "–" if ratio is None or not math.isfinite(ratio) else f"{ratio:.2f}x"


def _wins(wins: int | None, pairs: int | None) -> str:
    return "" if wins is None else f" ({wins}/{pairs})"


def markdown(rows: list[dict], backbone_psnr: float | None = None) -> str:
    lines = [
        "| variant | new-module lr | step | gate mean / max (heads open) | flow error vs another path (wins) | "
        "RotErr vs withheld | depth error vs without (wins) | PSNR gain, camera / depth (dB) | text-only drift (dB) | "
        "text-only vs GT (dB, Δ base) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gate = "–" if r["gate_mean"] is None else f"{r['gate_mean']:.2g} / {r['gate_max']:.2g}"
        gate += "" if r["gate_open"] is None else f" ({r['gate_open']:.0%})"
        lines.append(
            f"| {r['gate']} | {r['lr_scale']:g}x | {r['step']} | {gate} | "
            f"{_x(r['flow_ratio'])}{_wins(r['flow_wins'], r['flow_pairs'])} | {_x(r['rot_ratio'])} | "
            f"{_x(r['depth_ratio'])}{_wins(r['depth_wins'], r['depth_pairs'])} | "
            f"{_f(r['camera_psnr_gain'], '+.2f')} / {_f(r['depth_psnr_gain'], '+.2f')} | "
            f"{_f(r['drift_psnr'], '.1f')} | "
            f"{_f(r['text_psnr_gt'])} ({_f(r['text_psnr_gt_delta'], '+.2f')}) |"
        )
    if backbone_psnr is not None:
        lines += ["", f"Backbone (converted, gates closed) text-only vs GT: {backbone_psnr:.2f} dB; drift 100 = equal."]
    return "\n".join(lines) + "\n"


def write_table(work: str | Path) -> list[dict]:
    work = Path(work)
    rows = table_rows(work)
    if not rows:
        raise InputError(f"{work}: no eval/<variant>/step<S>/ with metrics.json or textonly/textonly.json")
    base_path = work / "eval" / "backbone" / "textonly" / "textonly.json"
    base = json.loads(base_path.read_text())["psnr_gt"] if base_path.is_file() else None
    text = markdown(rows, base)
    with atomic_path(work / "table.md") as tmp:
        tmp.write_text(text)
    with atomic_path(work / "table.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(text, end="", flush=True)
    return rows


# -- command line -----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("textonly", help="text-only clips of benchmark prompts and their drift from a reference run")
    t.add_argument("--bench", required=True, help="FullBench-Synth folder (fulldit synth --bench)")
    t.add_argument("--run", nargs=2, action="append", required=True, metavar=("CKPT", "OUT"), help="repeatable")
    t.add_argument("--reference", help="another textonly OUT with --save-clips: adds the drift PSNR")
    t.add_argument("--save-clips", action="store_true", help="keep OUT/clips.safetensors (for --reference)")
    t.add_argument("--combos", nargs="+", default=["camera", "depth"], help="cases taken in turn from these")
    t.add_argument("--clips", type=int, default=8, help="number of prompts (cases)")
    t.add_argument("--config", default=str(DEFAULT_CONFIG), help="its sample section: steps, shift, guidance")
    t.add_argument("--steps", type=int, help="sampling steps (default: --config's)")
    t.add_argument(
        "--codec-dtype",
        choices=["float32", "bfloat16", "checkpoint"],
        default="float32",
        help="decode every run's clips in this type (default float32, as Wan2.1), or each checkpoint's own",
    )
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    s = sub.add_parser("score", help="score `fulldit eval --generate-only` videos without the checkpoint")
    s.add_argument("--bench", required=True)
    s.add_argument("reports", nargs="+", help="fulldit eval --out folders")
    b = sub.add_parser("table", help="the comparison table from a bench/standin_backbone.sh work folder")
    b.add_argument("work")
    k = sub.add_parser("base", help="the stand-in's Wan2.1 release in 15 MiB parts (VAE in bf16), to reuse later")
    k.add_argument("work")
    args = p.parse_args(argv)
    if args.command == "textonly" and args.clips < 1:
        p.error("--clips must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> Any:
    args = parse_args(argv)
    if args.command == "textonly":
        cases = text_cases(args.bench, args.combos, args.clips)
        sampling = sampling_of(args.config, args.steps)
        dtype = None if args.codec_dtype == "checkpoint" else args.codec_dtype
        return [text_only_run(ckpt, out, cases, sampling, args.device, args.reference, args.save_clips, 16.0, dtype)
                for ckpt, out in args.run]  # fmt: skip
    if args.command == "score":
        return [score_report(args.bench, r) for r in args.reports]
    if args.command == "base":
        return pack_base(args.work)
    return write_table(args.work)


if __name__ == "__main__":
    main()
