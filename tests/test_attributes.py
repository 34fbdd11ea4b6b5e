"""The caption-attribute classifier's targets, scores, Fréchet distance and weight files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fulldit.errors import InputError
from fulldit.eval.attributes import GROUPS, AttributeNet, attribute_accuracy, frechet_distance, prepare, targets
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
    assert prepare(video).shape == (3, 8, 64, 64)
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
