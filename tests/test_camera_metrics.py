"""Camera-control metric: the error protocol on hand-made paths, and pose recovery on ground-truth renders."""

from __future__ import annotations

import math
import tempfile

import cv2
import numpy as np
import pytest
import torch

from fulldit.camera import build_path
from fulldit.eval.camera_metrics import PROTOCOL, camera_errors, estimate_poses, is_rotation_only
from fulldit.world.clips import plan_clip, render_clip

FRAMES, SIZE, SEED = 16, 128, 1


def _rotation(axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    return cv2.Rodrigues(axis / np.linalg.norm(axis) * angle)[0]


def _moved_world(w2c: np.ndarray, scale: float) -> np.ndarray:
    """The same camera path in another world frame and unit: w2c' = w2c @ inv(T) with T a similarity."""
    t = np.eye(4)
    t[:3, :3] = _rotation([0.3, -1.0, 0.2], 0.8)
    t[:3, 3] = [2.0, -1.0, 5.0]
    out = w2c @ np.linalg.inv(t)  # world moved rigidly
    out[:, :3, 3] *= scale  # and measured in another unit
    return out


# ------------------------------------------------------------------------------------------- camera_errors


def test_identical_paths_score_zero():
    w2c = build_path("orbit-left 0.6rad", FRAMES).w2c
    e = camera_errors(w2c, w2c)
    assert e == {"rot_err": 0.0, "trans_err": 0.0, "cammc": 0.0, "translating": 1.0}


def test_rotation_offset_on_one_frame_is_that_angle():
    true = build_path("truck-right 1", FRAMES).w2c
    est = true.copy()
    centre = -est[7, :3, :3].T @ est[7, :3, 3]
    est[7, :3, :3] = _rotation([1.0, 2.0, 3.0], 0.1) @ est[7, :3, :3]
    est[7, :3, 3] = -est[7, :3, :3] @ centre  # same camera centre, turned by 0.1 rad
    e = camera_errors(est, true)
    assert e["rot_err"] == pytest.approx(0.1, abs=1e-12)
    assert e["trans_err"] < 1e-12  # translations compared are camera centres (relative camera-to-world poses)
    assert e["cammc"] == pytest.approx(math.sqrt(8) * math.sin(0.05), abs=1e-12)  # |R1 - R2|_F of that frame


def test_scaled_and_moved_path_has_no_translation_error():
    true = build_path("orbit-right 0.7rad", FRAMES).w2c
    est = _moved_world(true, scale=3.0)  # what SfM returns: its own origin, axes and unit
    e = camera_errors(est, true)
    assert e["rot_err"] < 1e-9 and e["trans_err"] < 1e-9 and e["cammc"] < 1e-9
    assert e["translating"] == 1.0


def test_wrong_path_scores_high():
    e = camera_errors(build_path("truck-right 1", FRAMES).w2c, build_path("orbit-left 0.6rad", FRAMES).w2c)
    assert e["rot_err"] > 3.0 and e["trans_err"] > 5.0 and e["cammc"] > 5.0
    mirrored = camera_errors(build_path("pan-right 0.5rad", FRAMES).w2c, build_path("pan-left 0.5rad", FRAMES).w2c)
    assert mirrored["rot_err"] > 5.0


def test_non_translating_true_path_has_no_trans_err():
    true = build_path("pan-left 0.5rad", FRAMES).w2c
    est = true.copy()
    est[1:, :3, 3] += np.random.default_rng(0).normal(0, 1e-3, (FRAMES - 1, 3))  # SfM noise, arbitrary unit
    e = camera_errors(est, true)
    assert math.isnan(e["trans_err"]) and e["translating"] == 0.0
    assert e["rot_err"] < 1e-12 and e["cammc"] < 1e-12  # only the rotation blocks are compared
    est[5, :3, :3] = _rotation([0, 1, 0], 0.2) @ est[5, :3, :3]
    assert camera_errors(est, true)["cammc"] == pytest.approx(np.linalg.norm(_rotation([0, 1, 0], 0.2) - np.eye(3)))


def test_still_estimate_of_a_translating_path_scores_its_full_translation():
    true = build_path("truck-right 1", FRAMES).w2c  # centres at s * x, s = 0 .. 1
    e = camera_errors(np.tile(np.eye(4), (FRAMES, 1, 1)), true)
    assert e["rot_err"] == 0.0
    assert e["trans_err"] == pytest.approx(np.linspace(0, 1, FRAMES).sum())
    assert e["cammc"] == pytest.approx(e["trans_err"])


def test_camera_errors_rejects_mismatched_paths():
    with pytest.raises(ValueError):
        camera_errors(np.tile(np.eye(4), (4, 1, 1)), np.tile(np.eye(4), (5, 1, 1)))
    bad = np.tile(np.eye(4), (4, 1, 1))
    bad[2, 0, 3] = np.nan
    with pytest.raises(ValueError):
        camera_errors(bad, np.tile(np.eye(4), (4, 1, 1)))


def test_is_rotation_only():
    for move in ["static", "pan-left", "tilt-up", "zoom-out", "roll-left", "zoom-in+pan-right", "pan+tilt"]:
        assert is_rotation_only(move), move
    for move in ["orbit-left", "dolly-in", "truck-right", "orbit+tilt-up", "zoom-in+dolly-out", "", None]:
        assert not is_rotation_only(move), move
    plan = plan_clip(3, moves=["zoom+pan"], references_per_object=0)
    assert is_rotation_only(plan.meta(128, 128)["move"])
    assert not is_rotation_only(plan_clip(3, moves=["orbit+tilt"], references_per_object=0).meta(128, 128)["move"])
    assert is_rotation_only({"name": "static", "parts": [], "profile": "linear"})
    with pytest.raises(ValueError):
        is_rotation_only("spin-left")


def test_protocol_states_the_conventions():
    assert "CamI2V" in PROTOCOL and "four" in PROTOCOL and "radians" in PROTOCOL


# ------------------------------------------------------------------------------------------ estimate_poses

# (move, rotation_only, a different move whose path the estimate must not match, max RotErr summed over 16 frames)
# measured at seed 1: orbit-left 0.10, truck-right 0.10, pan-left 0.03, zoom-in 0.02, zoom-out+pan-left 0.02 rad;
# against the other move's path 2.9 - 3.7 rad
RECOVERY = [
    ("orbit-left", False, "truck-right", 0.5),
    ("truck-right", False, "orbit-left", 0.5),
    ("pan-left", True, "tilt-up", 0.2),
    ("zoom-in", True, "pan-right", 0.2),
    ("zoom+pan", True, "tilt-down", 0.2),  # per-frame intrinsics: with frame 0's K for all frames this is 0.44
]


@pytest.fixture(scope="module")
def clips():
    cache = {}

    def get(move):
        if move not in cache:
            cache[move] = render_clip(SEED, FRAMES, SIZE, SIZE, references_per_object=0, moves=[move], motion=False)
        return cache[move]

    return get


@pytest.mark.parametrize("move,rotation_only,other,max_rot", RECOVERY)
def test_recovers_ground_truth_path(clips, move, rotation_only, other, max_rot):
    clip = clips(move)
    assert is_rotation_only(clip.meta["move"]) == rotation_only
    est = estimate_poses(clip.video, clip.camera.intrinsics, rotation_only=rotation_only)
    assert est.method == ("rotation" if rotation_only else "sfm"), est.message
    assert est.registered == FRAMES and est.w2c.shape == (FRAMES, 4, 4)
    np.testing.assert_allclose(est.w2c[0], np.eye(4), atol=1e-12)
    right = camera_errors(est.w2c, clip.camera.w2c)
    wrong = camera_errors(est.w2c, plan_clip(SEED, FRAMES, SIZE, SIZE, 0, moves=[other], motion=False).camera.w2c)
    assert right["rot_err"] < max_rot, (right, est.message)
    assert wrong["rot_err"] > max(1.0, 5 * right["rot_err"]), (wrong, right)
    if rotation_only:
        assert np.abs(est.w2c[:, :3, 3]).max() == 0.0 and math.isnan(right["trans_err"])
    else:
        assert right["trans_err"] < 1.5 and wrong["trans_err"] > 5 * right["trans_err"], (right, wrong)


def test_estimates_are_deterministic(clips):
    clip = clips("orbit-left")
    a = estimate_poses(clip.video, clip.camera.intrinsics, seed=3)
    b = estimate_poses(clip.video, clip.camera.intrinsics, seed=3)
    assert a.w2c is not None and np.array_equal(a.w2c, b.w2c)
    pan = clips("pan-left")
    a = estimate_poses(pan.video, pan.camera.intrinsics, rotation_only=True, seed=3)
    b = estimate_poses(pan.video, pan.camera.intrinsics, rotation_only=True, seed=3)
    assert np.array_equal(a.w2c, b.w2c)


@pytest.mark.parametrize("kind", ["noise", "constant"])
@pytest.mark.parametrize("rotation_only", [False, True])
def test_unusable_video_fails_with_a_message(kind, rotation_only, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the SfM scratch directory must be removed
    if kind == "noise":
        video = torch.rand(FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    else:
        video = torch.full((FRAMES, 3, SIZE, SIZE), 0.4)
    intr = build_path("static", FRAMES).intrinsics
    est = estimate_poses(video, intr, rotation_only=rotation_only)
    assert est.method == "failed" and est.w2c is None
    assert est.message and "\n" not in est.message
    assert list(tmp_path.iterdir()) == []


def test_work_dir_keeps_the_reconstruction(clips, tmp_path):
    clip = clips("orbit-left")
    est = estimate_poses(clip.video[:6], clip.camera.intrinsics[:6], work_dir=tmp_path / "sfm")
    assert (tmp_path / "sfm" / "database.db").is_file() and len(list((tmp_path / "sfm" / "images").iterdir())) == 6
    assert est.method == "sfm", est.message


def test_estimate_poses_rejects_bad_input():
    with pytest.raises(ValueError):
        estimate_poses(torch.rand(4, 1, 32, 32), np.tile([0.8, 0.8, 0.5, 0.5], (4, 1)))
    with pytest.raises(ValueError):
        estimate_poses(torch.rand(4, 3, 32, 32), np.tile([0.8, 0.8, 0.5, 0.5], (3, 1)))
