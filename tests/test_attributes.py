"""The caption-attribute classifier's targets, scores, Fréchet distance and weight files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fulldit.errors import InputError
from fulldit.eval.attributes import GROUPS, AttributeNet, attribute_accuracy, frechet_distance, prepare, targets
from fulldit.eval.weights_file import save_net
from fulldit.world.clips import caption, plan_clip


def test_targets_state_what_the_caption_states() -> None:
    """Every colour, shape and pattern named in the caption is a positive label, and nothing else is."""
    for seed in range(6):
        plan = plan_clip(seed, 4, 32, 32, 0)
        meta, text = plan.meta(32, 32), caption(plan.scene, plan.move)
        words = set(text.split(";")[0].replace(",", " ").split())
        t = targets(meta)
        for group in ("shapes", "colors"):
            labels = GROUPS[group][0]
            named = {label for label in labels if label in words}
            assert {labels[i] for i in t[group].nonzero()[:, 0].tolist()} == named, (seed, text)
        assert t["walls"].sum() == 1 and t["floor"].sum() == 1
        assert int(t["camera"].sum()) == len(meta["move"]["parts"])  # a static camera states no move


def test_attribute_accuracy_is_jaccard_and_exact_choice() -> None:
    target = {name: torch.zeros(len(labels)) for name, (labels, _) in GROUPS.items()}
    for name, (_, multi) in GROUPS.items():
        target[name][0] = 1
        if multi:
            target[name][1] = 1
    perfect = attribute_accuracy(target, target)
    assert perfect["mean"] == 1.0
    half = {k: v.clone() for k, v in target.items()}
    half["colors"][1] = 0  # {0} vs {0, 1}: Jaccard 1/2
    half["walls"] = torch.roll(half["walls"], 1)  # the wrong wall
    got = attribute_accuracy(half, target)
    assert got["colors"] == 0.5 and got["walls"] == 0.0 and got["shapes"] == 1.0
    assert got["mean"] == pytest.approx((6 - 0.5 - 1) / 6)
    static = {k: v.clone() for k, v in target.items()}
    static["camera"].zero_()
    assert attribute_accuracy(static, static)["camera"] == 1.0  # both empty: a static camera read as static


def test_frechet_distance() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    same = frechet_distance(a, b)
    shifted = frechet_distance(a, b + 1.0)  # a shift moves only the means' term: sum (d - 1)^2 - d^2
    d = a.mean(0) - b.mean(0)
    assert same < 0.5 and shifted == pytest.approx(same + float(((d - 1) ** 2 - d**2).sum()), abs=1e-6)
    with pytest.raises(InputError, match="feature vectors"):
        frechet_distance(a[:1], b)


def test_attribute_net_reads_a_video_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = AttributeNet(widths=(8, 8, 8, 8), features=16).eval()
    video = torch.rand(16, 3, 128, 128)
    assert prepare(video).shape == (3, 8, 128, 128)
    feats, preds = net.read(video)
    assert feats.shape == (16,) and set(preds) == set(GROUPS)
    assert all(int(preds[name].sum()) == 1 for name, (_, multi) in GROUPS.items() if not multi)
    net.save(tmp_path / "a.safetensors", info={"note": "test"}, dtype=torch.float32)
    again = AttributeNet.from_file(tmp_path / "a.safetensors")
    np.testing.assert_allclose(again.read(video)[0], feats, atol=1e-5)
    with pytest.raises(InputError, match="no such AttributeNet"):
        AttributeNet.from_file(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="cannot read"):
        AttributeNet.from_file(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match=r"video \(F, 3, H, W\)"):
        prepare(torch.rand(3, 64, 64))
    groups = {k: list(v[0]) for k, v in GROUPS.items()}  # weights trained on another input size are refused
    config = {"widths": [8, 8, 8, 8], "features": 16, "groups": groups, "input": [8, 64]}
    save_net(tmp_path / "old.safetensors", net, "AttributeNet", config, None, torch.float32)
    with pytest.raises(InputError, match=r"trained on inputs \[8, 64\]"):
        AttributeNet.from_file(tmp_path / "old.safetensors")


@pytest.fixture(scope="module")
def attribute_bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny FullBench-Synth (3 first-frame cases: no camera or depth scoring) and a tiny attribute net's weights."""
    from fulldit.cli import main

    d = tmp_path_factory.mktemp("attributes")
    args = ["synth", "--bench", "--cases", "3", "--combos", "first-frame", "--out", str(d / "bench"),
            "--frames", "4", "--size", "32x32", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    torch.manual_seed(0)
    AttributeNet(widths=(8, 8, 8, 8), features=4).save(d / "attr.safetensors", dtype=torch.float32)
    return {"bench": d / "bench", "net": d / "attr.safetensors"}


def test_scorer_reads_caption_attributes(attribute_bench: dict[str, Path]) -> None:
    from fulldit.eval.fullbench import Scorer, load_bench

    _, cases = load_bench(attribute_bench["bench"])
    case = cases[0]
    scorer = Scorer(attribute_model=str(attribute_bench["net"]))
    gt = scorer(case.clip.video, case)
    assert len(gt["attr_features"]) == 4 and all(isinstance(x, float) for x in gt["attr_features"])
    assert 0 <= gt["attr_acc"] <= 1 and gt["attr_acc"] == gt["attr_acc_gt"]  # the ground truth scored as itself
    assert gt["attr_features"] == gt["attr_features_gt"]
    noise = scorer(torch.rand_like(case.clip.video), case)
    assert noise["attr_acc_gt"] == gt["attr_acc_gt"] and noise["attr_features"] != gt["attr_features"]
    assert list(scorer.gt_attributes) == [case.id]  # the ground truth is read once per case
    net = AttributeNet.from_file(attribute_bench["net"])
    feats, preds = net.read(case.clip.video)
    by_group = attribute_accuracy(preds, targets(case.clip.meta))
    assert gt["attr_acc_gt"] == by_group["mean"]
    assert gt["attr_groups"] == gt["attr_groups_gt"] == [by_group[name] for name in GROUPS]
    np.testing.assert_allclose(gt["attr_features"], feats, atol=1e-6)


def test_aggregate_reports_frechet_and_accuracy_ratio(attribute_bench: dict[str, Path]) -> None:
    from fulldit.eval.fullbench import Scorer, aggregate, load_bench
    from fulldit.eval.report import markdown

    info, cases = load_bench(attribute_bench["bench"])
    scorer = Scorer(attribute_model=str(attribute_bench["net"]))
    torch.manual_seed(1)
    results = {c.id: {"given": scorer(c.clip.video, c), "noise": scorer(torch.rand_like(c.clip.video), c)}
               for c in cases}  # fmt: skip
    metrics = aggregate(results, {"first-frame": cases}, info)
    table = metrics["combos"]["first-frame"]
    assert "attr_features" not in table["given"] and table["given"]["attr_acc"]["n"] == 3  # lists: no statistics
    assert table["given"]["frechet"]["mean"] == pytest.approx(0.0, abs=1e-3)  # the ground truth against itself
    assert table["noise"]["frechet"]["mean"] > 1e-2
    summary = metrics["attributes"]["combos"]["first-frame"]
    assert summary["given"]["ratio"] == pytest.approx(1.0) and summary["given"]["n"] == 3
    assert summary["noise"]["frechet"] == table["noise"]["frechet"]["mean"]
    assert metrics["attributes"]["all"]["given"]["frechet"] == pytest.approx(0.0, abs=1e-3)
    groups = metrics["attributes"]["all"]["noise"]["groups"]
    assert list(groups) == list(GROUPS)  # per attribute group: means over the cases, generated and ground truth
    for i, name in enumerate(GROUPS):
        assert groups[name]["accuracy"] == pytest.approx(
            np.mean([results[c.id]["noise"]["attr_groups"][i] for c in cases])
        )
        assert groups[name]["accuracy_gt"] == pytest.approx(
            np.mean([results[c.id]["given"]["attr_groups"][i] for c in cases])
        )
    report = markdown({**metrics, "protocol": {"camera": ""}})
    assert "## Caption attributes" in report
    assert "| variant | " + " | ".join(GROUPS) + " |" in report  # the per-group table
    two = aggregate({c.id: results[c.id] for c in cases[:1]}, {"first-frame": cases[:1]}, info)
    assert "frechet" not in two["combos"]["first-frame"]["given"]  # one case: no Fréchet distance
    assert two["attributes"]["combos"]["first-frame"]["given"]["frechet"] is None
    assert "attributes" not in aggregate({c.id: {"given": {"psnr": 1.0}} for c in cases}, {"x": cases}, info)


def test_eval_attribute_model_option(
    attribute_bench: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import json

    from fulldit.cli import main

    base = ["eval", "--bench", str(attribute_bench["bench"]), "--videos", str(attribute_bench["bench"]), "--device",
            "cpu"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "a"), "--attribute-model", str(tmp_path / "missing")]) == 2
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    assert main([*base, "--out", str(tmp_path / "b"), "--attribute-model", str(tmp_path / "bad.safetensors")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "missing" in errors[0] and "bad.safetensors" in errors[1]  # one line each
    assert main([*base, "--out", str(tmp_path / "c"), "--attribute-model", str(attribute_bench["net"])]) == 0
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    row = metrics["attributes"]["combos"]["first-frame"]["given"]
    assert row["n"] == 3 and row["ratio"] == 1.0 and row["frechet"] == pytest.approx(0.0, abs=1e-3)
    assert "## Caption attributes" in (tmp_path / "c" / "report.md").read_text()
