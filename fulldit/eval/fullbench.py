"""FullBench on the synthetic world: generate every case with a checkpoint (or take another system's videos),
score it, and measure what each condition does.

For each case of a benchmark folder (`fulldit synth --bench`) the runner generates *variants* from the same
seed, differing only in the conditions given:

- `given`: every condition of the case's combination (and the caption as text);
- `withheld`: single-condition combinations only, that condition left out (the text stays): the baseline of
  the condition effect table;
- `other-path`: camera cases only, the camera path of another case of the same combination (the next one in
  bench.json, from the whole benchmark whatever --cases chooses; absent when the combination has one case);
- `text-only`: the camera+identity+depth cases, no condition but the text (PSNR against the ground truth).

Videos are written to OUT/videos/<case>/<variant>.mp4 and scores to OUT/scores/<case>/<variant>.json, each
atomically; a run that is interrupted and started again skips both and so finishes with the same numbers
(scores are always computed from the decoded .mp4, so a resumed run sees exactly what a fresh one sees).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fulldit.atomic import atomic_path
from fulldit.data import Clip
from fulldit.data.formats import load_entry, read_manifest
from fulldit.errors import InputError
from fulldit.eval.report import write_report
from fulldit.video_io import read_video, write_video

SINGLE = {"camera": "camera", "identity": "reference", "depth": "depth", "first-frame": "first_frame",
          "prefix": "prefix"}  # fmt: skip


CONDITIONS = {"camera", "reference", "depth", "first_frame", "prefix"}


@dataclass
class Case:
    """One benchmark case: its listing in bench.json, its ground-truth clip, and the cases it is compared with.

    `other`: whose camera path is "another path" (camera cases); `wrong`: whose references and depth are the wrong
    ones for the identity and depth margins. Both come from the whole benchmark, never the case itself (see
    `partners`), so they do not change with --cases or --combos.
    """

    id: str
    combo: str
    conditions: list[str]
    seed: int
    prefix_frames: int
    clip: Clip
    other: Case | None = None
    wrong: Case | None = None


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _case_problem(c: object) -> str | None:
    """What is wrong with one case of bench.json, or None."""
    if not isinstance(c, dict):
        return "expected an object"
    if not (isinstance(c.get("id"), str) and c["id"] and isinstance(c.get("combo"), str) and c["combo"]):
        return '"id" and "combo" must be non-empty strings'
    conditions = c.get("conditions")
    if not (isinstance(conditions, list) and all(isinstance(k, str) and k in CONDITIONS for k in conditions)):
        return f'"conditions" must be a list of {", ".join(sorted(CONDITIONS))}, found {conditions!r}'
    if not (_is_int(c.get("seed")) and c["seed"] >= 0):
        return f'"seed" must be a non-negative integer, found {c.get("seed")!r}'
    if not (_is_int(c.get("prefix_frames", 0)) and c.get("prefix_frames", 0) >= 0):
        return f'"prefix_frames" must be a non-negative integer, found {c.get("prefix_frames")!r}'
    return None


def read_listing(info_path: Path) -> tuple[dict, list[dict]]:
    """bench.json and its cases, each checked (InputError naming the file and the case)."""
    try:
        info = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{info_path}: malformed ({err})") from err
    if not isinstance(info, dict) or not isinstance(info.get("cases"), list) or not info["cases"]:
        raise InputError(f'{info_path}: expected an object with a non-empty list "cases"')
    fps = info.get("fps", 8)
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0):
        raise InputError(f'{info_path}: "fps" must be a positive number, found {fps!r}')
    seen: set[str] = set()
    for i, c in enumerate(info["cases"]):
        problem = _case_problem(c) or (f"case id {c['id']} appears twice" if c["id"] in seen else None)
        if problem:
            raise InputError(f"{info_path}: cases[{i}]: {problem}")
        seen.add(c["id"])
    return info, info["cases"]


def partners(listing: list[dict], entries: dict[str, dict], case: dict) -> tuple[str | None, str | None]:
    """(other, wrong) case ids for `case`, taken from the whole benchmark in bench.json order, never `case` itself.

    other: the next case of the same combination (cyclically) whose clip has a camera path; wrong: the first case
    with reference images and another seed. None where the benchmark has no such case.
    """
    same = [c["id"] for c in listing if c["combo"] == case["combo"] and entries[c["id"]].get("camera")]
    after = same[same.index(case["id"]) + 1 :] + same[: same.index(case["id"])] if case["id"] in same else same
    other = next((i for i in after if i != case["id"]), None)
    wrong = next(
        (c["id"] for c in listing if entries[c["id"]].get("references") and c["id"] != case["id"]
         and c["seed"] != case["seed"]),
        None,
    )  # fmt: skip
    return other, wrong


def load_bench(bench: str | Path, combos: list[str] | None = None, cases: int | None = None) -> tuple[dict, list[Case]]:
    """bench.json and the clips of the chosen cases (all by default: `cases` per combination of `combos`).

    Each chosen case comes with its `other` and `wrong` partner cases (`partners`), loaded too. InputError when
    the folder is not a FullBench-Synth folder or names a combination it does not have.
    """
    bench = Path(bench)
    info_path = bench / "bench.json"
    if not info_path.is_file():
        raise InputError(f"{bench}: not a benchmark folder (no bench.json; make one with `fulldit synth --bench`)")
    info, listing = read_listing(info_path)
    known = sorted({c["combo"] for c in listing})
    unknown = [c for c in combos or [] if c not in known]
    if unknown:
        raise InputError(f"unknown combination(s) {unknown}; this benchmark has: {', '.join(known)}")
    taken: dict[str, int] = {}
    chosen = []
    for c in listing:
        if (not combos or c["combo"] in combos) and (not cases or taken.get(c["combo"], 0) < cases):
            taken[c["combo"]] = taken.get(c["combo"], 0) + 1
            chosen.append(c)
    entries = {e.get("id"): (line, e) for line, e in read_manifest(bench)}
    missing = [c["id"] for c in listing if c["id"] not in entries]
    if missing:
        raise InputError(f"{info_path}: case {missing[0]} is not in manifest.jsonl")
    loaded: dict[str, Case] = {}

    def load(c: dict) -> Case:
        if c["id"] not in loaded:
            line, entry = entries[c["id"]]
            clip = load_entry(bench, line, entry)
            prefix = int(c.get("prefix_frames", 0))
            if prefix >= clip.num_frames:
                raise InputError(f"{info_path}: case {c['id']}: prefix_frames {prefix}, the clip has {clip.num_frames}")
            loaded[c["id"]] = Case(c["id"], c["combo"], list(c["conditions"]), c["seed"], prefix, clip)
        return loaded[c["id"]]

    by_id = {c["id"]: c for c in listing}
    manifest = {k: e for k, (_, e) in entries.items()}
    out = []
    for c in chosen:
        case = load(c)
        other, wrong = partners(listing, manifest, c)
        case.other = load(by_id[other]) if other else None
        case.wrong = load(by_id[wrong]) if wrong else None
        out.append(case)
    return info, out


def variants(case: Case) -> list[str]:
    """The variants generated for a case (see the module docstring)."""
    out = ["given"]
    if case.combo in SINGLE:
        out.append("withheld")
    if case.combo == "camera" and case.other is not None:
        out.append("other-path")
    if case.combo == "camera+identity+depth":
        out.append("text-only")
    return out


def pick_references(clip: Clip, limit: int) -> list[torch.Tensor]:
    """At most `limit` references, one per object first (a model may take fewer than the clip has)."""
    owners = clip.meta.get("reference_objects") or list(range(len(clip.references)))
    order = sorted(range(len(clip.references)), key=lambda i: (owners[:i].count(owners[i]), i))
    return [clip.references[i] for i in order[:limit]]


def request_fields(case: Case, variant: str, max_references: int = 4) -> dict[str, Any]:
    """Pipeline.generate keyword arguments for a case variant."""
    clip = case.clip
    given = set(case.conditions)
    if variant == "withheld":
        given -= {SINGLE[case.combo]}
    if variant == "text-only":
        given = set()
    fields: dict[str, Any] = {"prompt": clip.caption, "frames": clip.num_frames, "height": clip.video.shape[2],
                              "width": clip.video.shape[3], "seed": case.seed % 2**31}  # fmt: skip
    if "camera" in given:
        fields["camera"] = (case.other.clip if variant == "other-path" else clip).camera
    if "reference" in given:
        fields["references"] = pick_references(clip, max_references)
    if "depth" in given:
        fields["depth"] = clip.depth
    if "first_frame" in given:
        fields["first_frame"] = clip.video[0]
    if "prefix" in given:
        fields["prefix"] = clip.video[: max(1, case.prefix_frames)]
    return fields


class Scorer:
    """Every metric of the benchmark, with the estimators loaded once."""

    def __init__(
        self,
        depth_estimator: str | None = None,
        device: str = "cpu",
        clip_model: str | None = None,
        identity_model: str | None = None,
        attribute_model: str | None = None,
    ):
        """`attribute_model`: caption-attribute classifier weights (fulldit.eval.attributes); by default the shipped
        ones where they exist, else no attribute metrics. A file given explicitly must load (InputError if not)."""
        from fulldit.eval.attributes import DEFAULT_WEIGHTS, AttributeNet
        from fulldit.eval.depth_metrics import load_estimator
        from fulldit.eval.identity import ClipTextScore, FeatureIdentity

        self.depth = load_estimator(depth_estimator, device)
        self.text = ClipTextScore(clip_model, device) if clip_model else None
        self.features = FeatureIdentity(identity_model, device) if identity_model else None
        if attribute_model is None and DEFAULT_WEIGHTS.is_file():
            attribute_model = str(DEFAULT_WEIGHTS)
        self.attributes = AttributeNet.from_file(attribute_model, device) if attribute_model else None
        self.gt_flow: dict[str, np.ndarray] = {}  # per case: every variant compares against the same GT flow
        self.gt_attributes: dict[str, tuple] = {}  # per case: GT features, accuracy and accuracy per group

    def read_attributes(self, video: torch.Tensor, meta: dict) -> tuple[list[float], float, list[float]]:
        """The classifier's feature vector of a video, its caption-attribute accuracy against `meta`, and that
        accuracy per attribute group (in `attributes.GROUPS` order: which of the caption's statements fail)."""
        from fulldit.eval.attributes import GROUPS

        features, scores = self.attributes.caption_scores(video, meta)
        return [float(x) for x in features], scores["mean"], [scores[name] for name in GROUPS]

    def __call__(self, video: torch.Tensor, case: Case) -> dict[str, Any]:
        from fulldit.eval.camera_metrics import camera_errors, estimate_poses, is_rotation_only
        from fulldit.eval.depth_metrics import depth_errors
        from fulldit.eval.identity import identity_score
        from fulldit.eval.video_metrics import dynamic_degree, motion_agreement, optical_flow, psnr, smoothness, ssim

        gt = case.clip
        if video.shape != gt.video.shape:
            raise InputError(f"case {case.id}: video is {tuple(video.shape)}, the case is {tuple(gt.video.shape)}")
        s: dict[str, Any] = {"psnr": psnr(video, gt.video), "ssim": ssim(video, gt.video),
                             "first_frame_psnr": psnr(video[:1], gt.video[:1]),
                             "dynamic_degree": dynamic_degree(video), "smoothness": smoothness(video)}  # fmt: skip
        if case.prefix_frames:
            s["prefix_psnr"] = psnr(video[: case.prefix_frames], gt.video[: case.prefix_frames])
            s["continuation_psnr"] = psnr(video[case.prefix_frames :], gt.video[case.prefix_frames :])
        if "camera" in case.conditions:
            if case.id not in self.gt_flow:
                self.gt_flow[case.id] = optical_flow(gt.video)
            flow = motion_agreement(optical_flow(video), self.gt_flow[case.id])
            s.update(flow)
            est = estimate_poses(video, gt.camera.intrinsics, rotation_only=is_rotation_only(gt.meta.get("move", "")))
            s["sfm_ok"] = float(est.w2c is not None)
            if est.w2c is not None:
                s.update(camera_errors(est.w2c, gt.camera.w2c))
        if "depth" in case.conditions:
            inv = self.depth(video)
            s.update({f"depth_{k}": v for k, v in depth_errors(inv, gt.depth).items()})
            wrong = case.wrong.clip.depth if case.wrong else None
            if wrong is not None and wrong.shape == gt.depth.shape:  # right vs another depth
                s["depth_margin"] = depth_errors(inv, wrong)["inv_mae"] - s["depth_inv_mae"]
        if "reference" in case.conditions and gt.references:
            right = float(np.mean([identity_score(video, r) for r in gt.references]))
            s["identity"] = right
            if case.wrong is not None:  # right vs another case's references
                wrong_score = np.mean([identity_score(video, r) for r in case.wrong.clip.references])
                s["identity_margin"] = right - float(wrong_score)
            if self.features is not None:
                s["identity_features"] = float(np.mean([self.features.score(video, r) for r in gt.references]))
        if self.text is not None:
            s["clip_text"] = self.text.score(video, gt.caption)
        if self.attributes is not None:  # lists: the features of the Fréchet distance, not per-video metrics
            if case.id not in self.gt_attributes:
                self.gt_attributes[case.id] = self.read_attributes(gt.video, gt.meta)
            s["attr_features"], s["attr_acc"], s["attr_groups"] = self.read_attributes(video, gt.meta)
            s["attr_features_gt"], s["attr_acc_gt"], s["attr_groups_gt"] = self.gt_attributes[case.id]
        return s


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def run(
    bench: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    videos: str | Path | None = None,
    cases: int | None = None,
    combos: list[str] | None = None,
    depth_estimator: str | None = None,
    device: str | None = None,
    steps: int | None = None,
    clip_model: str | None = None,
    identity_model: str | None = None,
    score: bool = True,
    attribute_model: str | None = None,
) -> dict:
    """Generate (or take from `videos`) and score the cases of a benchmark; write metrics.json and report.md."""
    if (checkpoint is None) == (videos is None):
        raise InputError("give exactly one of --checkpoint (generate) or --videos (score existing videos)")
    info, chosen = load_bench(bench, combos, cases)
    external = {c.id: _external_videos(Path(videos), c) for c in chosen} if videos is not None else {}
    by_combo: dict[str, list[Case]] = {}
    for c in chosen:
        by_combo.setdefault(c.combo, []).append(c)
    out = Path(out)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = None
    if checkpoint is not None:
        from fulldit.generate import Pipeline

        pipe = Pipeline.from_pretrained(checkpoint, device=device)
        needed = {k for c in chosen for k in c.conditions if k in ("camera", "reference", "depth")}
        missing = sorted(needed - set(pipe.config.model.conditions))
        if missing:
            raise InputError(f"{checkpoint}: no {', '.join(missing)} condition, which the chosen cases need (--combos)")
        for frames, height, width in {(c.clip.num_frames, *c.clip.video.shape[2:]) for c in chosen}:
            pipe.check_size(frames, height, width, f"{bench}: the cases' videos")
    scorer = Scorer(depth_estimator, "cpu", clip_model, identity_model, attribute_model) if score else None
    jobs = [(c, v) for group in by_combo.values() for c in group for v in (variants(c) if pipe else external[c.id])]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for case, variant in tqdm(jobs, desc="fullbench", unit="video"):
        score_path = out / "scores" / case.id / f"{variant}.json"
        if score_path.is_file():
            results.setdefault(case.id, {})[variant] = json.loads(score_path.read_text())
            continue
        if pipe is not None:
            video_path = out / "videos" / case.id / f"{variant}.mp4"
            if not video_path.is_file():
                fields = request_fields(case, variant, pipe.config.model.reference.max_images)
                if steps:
                    fields["steps"] = steps
                write_video(video_path, pipe.generate(**fields), fps=float(info.get("fps", 8)))
        else:
            video_path = external[case.id][variant]
        if scorer is None:  # --generate-only: videos now (e.g. on a GPU), scores later (e.g. where SfM runs)
            continue
        video = read_video(video_path)[: case.clip.num_frames]
        score = scorer(video, case)
        _write_json(score_path, score)
        results.setdefault(case.id, {})[variant] = score
    if scorer is None:
        return {}
    metrics = aggregate(results, by_combo, info)
    metrics["source"] = {"checkpoint": str(checkpoint)} if checkpoint else {"videos": str(videos)}
    _write_json(out / "metrics.json", metrics)
    write_report(out, metrics, by_combo, variants)
    return metrics


def _external_videos(videos: Path, case: Case) -> dict[str, Path]:
    """The videos to score for a case, by variant: a report's DIR/<case>/<variant>.mp4 (what `--generate-only`
    wrote, e.g. on a GPU machine without SfM), else DIR/<case>.mp4 or a benchmark folder's own
    clips/<case>/video.mp4 (to score the ground truth) as "given"."""
    if (videos / case.id).is_dir():
        found = {v: videos / case.id / f"{v}.mp4" for v in variants(case) if (videos / case.id / f"{v}.mp4").is_file()}
        if "given" not in found:
            raise InputError(f"{videos / case.id}: no given.mp4 (a report's videos: <case>/<variant>.mp4)")
        return found
    for path in (videos / f"{case.id}.mp4", videos / "clips" / case.id / "video.mp4"):
        if path.is_file():
            return {"given": path}
    raise InputError(f"{videos}: no video for case {case.id} (expected {case.id}.mp4 or {case.id}/given.mp4)")


LOWER_IS_BETTER = {"rot_err", "trans_err", "cammc", "flow_epe", "depth_abs_rel", "depth_inv_mae", "smoothness"}
EFFECTS = [  # (condition, combination, metric) whose given-vs-withheld ratio says whether the control works
    ("camera", "camera", "rot_err"),
    ("camera", "camera", "flow_epe"),
    ("camera", "camera", "flow_dir_cos"),
    ("depth", "depth", "depth_inv_mae"),
    ("identity", "identity", "identity"),
    ("first frame", "first-frame", "first_frame_psnr"),
    ("prefix", "prefix", "continuation_psnr"),
    ("all (vs text only)", "camera+identity+depth", "psnr"),
]


def _stats(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite)), "n": len(finite)}


def _paired(results: dict, group: list[Case], metric: str, base: str, name: str) -> dict[str, Any]:
    """Per case given − `base` (same case, same seed): its mean ± std over cases and in how many cases given wins.

    A mean ratio can hide that a condition helps in half the cases and hurts in the rest; the paired difference
    and the win count say how consistent the effect is.
    """
    diffs = []
    for c in group:
        scores = results.get(c.id, {})
        g, b = scores.get("given", {}).get(metric), scores.get(base, {}).get(metric)
        if g is not None and b is not None and math.isfinite(g) and math.isfinite(b):
            diffs.append(g - b)
    if not diffs:
        return {}
    wins = sum(d < 0 if metric in LOWER_IS_BETTER else d > 0 for d in diffs)
    return {f"diff_{name}": _stats(diffs), f"wins_{name}": wins, f"pairs_{name}": len(diffs)}


def _attribute_row(scores: list[dict]) -> dict[str, Any]:
    """Caption-attribute accuracy of generated and GT videos (means over the cases), their ratio, and the Fréchet
    distance between the generated and the GT features of the same cases (None with fewer than 2 cases)."""
    from fulldit.eval.attributes import GROUPS, frechet_distance

    rows = [r for r in scores if "attr_acc" in r and "attr_acc_gt" in r]
    acc = float(np.mean([r["attr_acc"] for r in rows]))
    acc_gt = float(np.mean([r["attr_acc_gt"] for r in rows]))
    pairs = [r for r in rows if r.get("attr_features") and r.get("attr_features_gt")]
    widths = {len(r[k]) for r in pairs for k in ("attr_features", "attr_features_gt")}
    frechet = None
    if len(pairs) >= 2 and len(widths) == 1:  # one width: scores of one classifier
        gen = np.array([r["attr_features"] for r in pairs], dtype=np.float64)
        gt = np.array([r["attr_features_gt"] for r in pairs], dtype=np.float64)
        frechet = max(0.0, frechet_distance(gen, gt))  # not below 0 by rounding
    grouped = [r for r in rows if len(r.get("attr_groups", ())) == len(r.get("attr_groups_gt", ())) == len(GROUPS)]
    groups = {name: {"accuracy": float(np.mean([r["attr_groups"][i] for r in grouped])),
                     "accuracy_gt": float(np.mean([r["attr_groups_gt"][i] for r in grouped]))}
              for i, name in enumerate(GROUPS)} if grouped else {}  # fmt: skip
    return {"accuracy": acc, "accuracy_gt": acc_gt, "ratio": acc / acc_gt if acc_gt else float("nan"),
            "frechet": frechet, "n": len(rows), "n_frechet": len(pairs) if frechet is not None else 0,
            "groups": groups}  # fmt: skip


def _attributes(results: dict, by_combo: dict[str, list[Case]], combos: dict[str, dict]) -> dict[str, Any]:
    """metrics.json "attributes": per combination and variant (and per variant over all cases, "all"), the
    caption-attribute summary of `_attribute_row`; adds "attr_ratio" and "frechet" to the combination tables."""
    out: dict[str, Any] = {"combos": {}, "all": {}}
    pooled: dict[str, list[dict]] = {}
    for combo, group in by_combo.items():
        for variant in sorted({v for c in group for v in results.get(c.id, {})}):
            scores = [results[c.id][variant] for c in group if variant in results.get(c.id, {})]
            scores = [r for r in scores if "attr_acc" in r and "attr_acc_gt" in r]
            if not scores:
                continue
            pooled.setdefault(variant, []).extend(scores)
            row = out["combos"].setdefault(combo, {})[variant] = _attribute_row(scores)
            table = combos[combo][variant]
            table["attr_ratio"] = {"mean": row["ratio"], "std": 0.0, "n": row["n"]}
            if row["frechet"] is not None:
                table["frechet"] = {"mean": row["frechet"], "std": 0.0, "n": row["n_frechet"]}
    out["all"] = {variant: _attribute_row(scores) for variant, scores in sorted(pooled.items())}
    return out if out["combos"] else {}


def aggregate(results: dict, by_combo: dict[str, list[Case]], info: dict) -> dict:
    """metrics.json: per combination, variant and metric mean/std/n; the condition effect table; the caption-attribute
    summary ("attributes", where the videos were scored with the attribute classifier); per-case scores."""
    from fulldit.eval.camera_metrics import PROTOCOL

    combos: dict[str, dict] = {}
    for combo, group in by_combo.items():
        table: dict[str, dict] = {}
        for variant in sorted({v for c in group for v in results.get(c.id, {})}):
            rows = [results[c.id][variant] for c in group if variant in results.get(c.id, {})]
            names = sorted({k for r in rows for k, v in r.items() if not isinstance(v, list)})  # lists: features
            table[variant] = {k: _stats([r.get(k) for r in rows]) for k in names}
            if "sfm_ok" in names:
                table[variant]["sfm_failed"] = {"mean": float(sum(r.get("sfm_ok", 0) == 0 for r in rows)), "std": 0,
                                                "n": len(rows)}  # fmt: skip
        combos[combo] = table
    attributes = _attributes(results, by_combo, combos)
    effect = []
    for condition, combo, metric in EFFECTS:
        table = combos.get(combo, {})
        base = "text-only" if combo == "camera+identity+depth" else "withheld"
        if "given" not in table or base not in table or metric not in table["given"]:
            continue
        g, w = table["given"][metric]["mean"], table[base].get(metric, {}).get("mean", float("nan"))
        row = {"condition": condition, "combo": combo, "metric": metric,
               "better": "lower" if metric in LOWER_IS_BETTER else "higher", "given": g, "withheld": w,
               "ratio": g / w if w else float("nan"), "n": table["given"][metric]["n"]}  # fmt: skip
        row.update(_paired(results, by_combo[combo], metric, base, "withheld"))
        if "other-path" in table and metric in table["other-path"]:
            row["other_path"] = table["other-path"][metric]["mean"]
            row.update(_paired(results, by_combo[combo], metric, "other-path", "other_path"))
        effect.append(row)
    return {
        "version": info.get("version"),
        "frames": info.get("frames"),
        "size": [info.get("height"), info.get("width")],
        "protocol": {"camera": PROTOCOL},
        "combos": combos,
        "effect": effect,
        **({"attributes": attributes} if attributes else {}),
        "cases": results,
    }
