"""fulldit.camera path and files: round trips, the relative-pose convention, named moves, intrinsics, Plücker rays."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fulldit.camera import (
    MOVE_NAMES,
    CameraPath,
    build_path,
    camera_features,
    load_camera,
    make_move,
    parse_camera_json,
    parse_re10k,
    plucker_rays,
    save_camera_json,
    save_camera_re10k,
    validate,
)
from fulldit.errors import InputError


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def random_rigid(rng: np.random.Generator, scale: float = 3.0) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = random_rotation(rng), rng.normal(size=3) * scale
    return m


def random_path(rng: np.random.Generator, frames: int = 6) -> CameraPath:
    w2c = np.stack([random_rigid(rng) for _ in range(frames)])
    intr = np.column_stack([rng.uniform(0.4, 1.2, (frames, 2)), rng.uniform(0.4, 0.6, (frames, 2))])
    return CameraPath(intr, w2c)


def project(k: np.ndarray, point_cam: np.ndarray) -> np.ndarray:
    p = k @ point_cam
    return p[:2] / p[2]


# --- file round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("move", ["orbit-left 0.7rad", "zoom-in 1.7x", "tilt-up 0.7rad"])
@pytest.mark.parametrize("ext", [".txt", ".json"])
def test_round_trip(tmp_path: Path, move: str, ext: str) -> None:
    cam = build_path(move, 9, width=160, height=90, fov_deg=50.0)
    path = tmp_path / f"cam{ext}"
    if ext == ".txt":
        save_camera_re10k(cam, path, url="https://www.youtube.com/watch?v=abc")
    else:
        save_camera_json(cam, path)
    back = load_camera(path)
    assert back.num_frames == 9
    np.testing.assert_allclose(back.intrinsics, cam.intrinsics, atol=1e-6)
    np.testing.assert_allclose(back.w2c, cam.w2c, atol=1e-6)
    assert not list(tmp_path.glob(".*partial*")), "atomic write left a temp file behind"


def test_round_trip_random_path(tmp_path: Path) -> None:
    cam = random_path(np.random.default_rng(0))
    save_camera_re10k(cam, tmp_path / "a.txt", timestamps_us=range(0, 600, 100))
    save_camera_json(cam, tmp_path / "a.json")
    for name in ("a.txt", "a.json"):
        back = load_camera(tmp_path / name)
        np.testing.assert_allclose(back.w2c, cam.w2c, atol=1e-12)
        np.testing.assert_allclose(back.intrinsics, cam.intrinsics, atol=1e-12)
    assert (tmp_path / "a.txt").read_text().splitlines()[2].split()[0] == "100"


def test_re10k_reference_line_and_shared_json_intrinsics() -> None:
    line = "45045 0.5 0.9 0.5 0.5 0 0 1 0 0 0.1 0 1 0 0.2 0 0 1 0.3"
    cam = parse_re10k(f"https://example.com\n{line}\n\n\n")
    np.testing.assert_allclose(cam.intrinsics[0], [0.5, 0.9, 0.5, 0.5])
    np.testing.assert_allclose(cam.w2c[0, :3, 3], [0.1, 0.2, 0.3])
    assert parse_re10k(f"{line}\n{line}\n").num_frames == 2  # no URL line: frame 0 is kept, not taken as a URL

    cam = parse_camera_json('{"intrinsics": [0.5, 0.6, 0.5, 0.5], "w2c": [[[1,0,0,0],[0,1,0,0],[0,0,1,2]]]}')
    np.testing.assert_allclose(cam.w2c[0], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]])
    np.testing.assert_allclose(cam.intrinsics, [[0.5, 0.6, 0.5, 0.5]])


# --- relative poses -----------------------------------------------------------------------------------------------


def test_relative_frame0_identity_and_world_invariance() -> None:
    rng = np.random.default_rng(1)
    cam = random_path(rng)
    rel = cam.relative()
    np.testing.assert_allclose(rel.w2c[0], np.eye(4), atol=1e-12)
    validate(rel, "rel")
    world = random_rigid(rng, scale=10.0)  # moves the world by `world`: X' = world @ X
    moved = CameraPath(cam.intrinsics, cam.w2c @ np.linalg.inv(world))
    assert not np.allclose(moved.w2c, cam.w2c, atol=1e-3)
    for normalize in (True, False):
        np.testing.assert_allclose(moved.relative(normalize).w2c, cam.relative(normalize).w2c, atol=1e-9)
    np.testing.assert_allclose(camera_features(moved).numpy(), camera_features(cam).numpy(), atol=1e-5)


def test_relative_scale_normalisation() -> None:
    cam = random_path(np.random.default_rng(2))
    unscaled = np.linalg.norm(cam.relative(normalize_scale=False).camera_centers(), axis=1)
    assert unscaled.max() > 2.0
    dist = np.linalg.norm(cam.relative().camera_centers(), axis=1)
    assert dist.max() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(dist, unscaled / unscaled.max(), atol=1e-12)  # one scale for the whole path


def test_relative_pure_rotation_is_not_blown_up() -> None:
    rng = np.random.default_rng(3)
    world = random_rigid(rng, scale=100.0)  # a pan placed far from the origin: centres agree only up to rounding
    pan = build_path("pan-right 0.5rad", 8)
    cam = CameraPath(pan.intrinsics, pan.w2c @ np.linalg.inv(world))
    rel = cam.relative()
    assert np.abs(rel.w2c[:, :3, 3]).max() < 1e-9
    np.testing.assert_allclose(rel.w2c, pan.w2c, atol=1e-9)


def test_camera_features_layout() -> None:
    cam = build_path("dolly-in 4", 5)
    feats = camera_features(cam)
    assert feats.shape == (5, 16) and feats.dtype == torch.float32
    np.testing.assert_allclose(feats[0, :12].numpy(), np.eye(4)[:3].reshape(-1))
    np.testing.assert_allclose(feats[-1, 11].item(), -1.0, atol=1e-6)  # t_z of the last frame, scale-normalised
    np.testing.assert_allclose(feats[:, 12:].numpy(), cam.intrinsics, atol=1e-7)


def test_subsample() -> None:
    cam = build_path("truck-right 1", 10)
    sub = cam.subsample([0, 3, 9])
    np.testing.assert_allclose(sub.w2c, cam.w2c[[0, 3, 9]])
    with pytest.raises(InputError, match="10 frames"):
        cam.subsample([0, 10])


# --- named moves (fulldit.camera.moves), as the rest of the code and the tests build paths --------------------------


def test_every_move_is_valid_and_starts_at_identity() -> None:
    for move in MOVE_NAMES:
        cam = build_path([make_move(move)], 7)
        validate(cam, move)
        np.testing.assert_allclose(cam.w2c[0], np.eye(4), atol=1e-12)
    with pytest.raises(InputError, match="at least 2 frames"):
        build_path("pan-left", 1)
    with pytest.raises(InputError, match="orbit-left"):
        build_path("spin", 5)


def test_dolly_moves_along_view_axis() -> None:
    for move, sign in (("dolly-in", 1.0), ("dolly-out", -1.0)):
        cam = build_path(f"{move} 2", 6)
        centres = cam.camera_centers()
        view_axis = cam.w2c[0, :3, :3].T @ np.array([0.0, 0.0, 1.0])  # camera +z in world coordinates
        np.testing.assert_allclose(centres - centres[0], sign * np.outer(np.linspace(0, 2, 6), view_axis), atol=1e-12)
        np.testing.assert_allclose(cam.w2c[:, :3, :3], np.broadcast_to(np.eye(3), (6, 3, 3)), atol=1e-12)


def test_pan_rotates_about_y_in_place() -> None:
    cam = build_path("pan-right 0.4rad", 5)
    np.testing.assert_allclose(cam.camera_centers(), 0.0, atol=1e-12)
    rot = cam.w2c[-1, :3, :3]
    np.testing.assert_allclose(rot @ [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)  # y axis is the rotation axis
    forward = rot.T @ [0.0, 0.0, 1.0]
    assert forward[0] > 0  # pan-right looks towards +x
    assert math.acos(forward[2]) == pytest.approx(0.4)
    assert (build_path("pan-left 0.4rad", 5).w2c[-1, :3, :3].T @ [0, 0, 1])[0] < 0
    assert (build_path("tilt-up 0.4rad", 5).w2c[-1, :3, :3].T @ [0, 0, 1])[1] < 0  # up is -y


def test_orbit_keeps_distance_and_target_centred() -> None:
    target = np.array([0.0, 0.0, 2.0])
    for move, side in (("orbit-left", -1.0), ("orbit-right", 1.0)):
        cam = build_path(f"{move} 1.2rad", 9)
        centres = cam.camera_centers()
        np.testing.assert_allclose(np.linalg.norm(centres - target, axis=1), 2.0, atol=1e-12)
        assert np.sign(centres[-1, 0]) == side
        target_cam = np.einsum("fij,j->fi", cam.w2c[:, :3, :3], target) + cam.w2c[:, :3, 3]
        np.testing.assert_allclose(target_cam[:, :2], 0.0, atol=1e-12)  # stays on the optical axis
        assert math.acos(np.dot(centres[-1] - target, centres[0] - target) / 4.0) == pytest.approx(1.2)


def test_zoom_changes_only_focal() -> None:
    cam = build_path("zoom-in 2x", 4, fov_deg=90.0)
    np.testing.assert_allclose(cam.w2c, np.broadcast_to(np.eye(4), (4, 4, 4)))
    np.testing.assert_allclose(cam.intrinsics[:, 2:], 0.5)
    np.testing.assert_allclose(cam.intrinsics[[0, -1], 0], [0.5, 1.0])  # 90 deg: fx = 0.5, doubled at the end
    np.testing.assert_allclose(cam.intrinsics[:, 1], cam.intrinsics[:, 0])


# --- intrinsics under resize and crop -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src_hw, scale, top_left, dst_hw",
    [
        ((256, 384), 0.5, (0, 32), (128, 128)),
        ((480, 640), 0.6, (10, 50), (256, 256)),
        ((100, 100), 1.7, (5, 0), (64, 160)),
    ],
)
def test_resized_cropped_projects_to_same_pixel(src_hw, scale, top_left, dst_hw) -> None:
    cam = CameraPath(np.array([[0.7, 1.1, 0.45, 0.55]]), np.eye(4)[None])
    new = cam.resized_cropped(src_hw, scale, top_left, dst_hw)
    k_src, k_dst = cam.intrinsics_px(*src_hw)[0], new.intrinsics_px(*dst_hw)[0]
    for point in np.random.default_rng(4).uniform([-1, -1, 1], [1, 1, 4], (10, 3)):
        u, v = project(k_src, point)
        expected = [u * scale - top_left[1], v * scale - top_left[0]]
        np.testing.assert_allclose(project(k_dst, point), expected, atol=1e-9)


def test_resized_cropped_matches_real_image_ops() -> None:
    """Render a blob at a projected point, resize and crop it with OpenCV, and find it where the new K says."""
    (h, w), scale, (top, left), (dh, dw) = (256, 384), 0.5, (0, 40), (128, 128)
    cam = CameraPath(np.array([[0.6, 0.9, 0.45, 0.55]]), np.eye(4)[None])
    point = np.array([0.3, -0.1, 2.0])
    u, v = project(cam.intrinsics_px(h, w)[0], point)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    image = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 4.0**2)).astype(np.float32)
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    crop = small[top : top + dh, left : left + dw].astype(np.float64)
    yy, xx = np.mgrid[0:dh, 0:dw] + 0.5
    found = np.array([(crop * xx).sum(), (crop * yy).sum()]) / crop.sum()
    new = cam.resized_cropped((h, w), scale, (top, left), (dh, dw))
    predicted = project(new.intrinsics_px(dh, dw)[0], point)
    assert 10 < predicted[0] < dw - 10 and 10 < predicted[1] < dh - 10
    np.testing.assert_allclose(found, predicted, atol=0.02)


# --- Plücker rays -------------------------------------------------------------------------------------------------


def test_plucker_identity_camera() -> None:
    cam = CameraPath(np.array([[0.8, 0.8, 0.5, 0.5]]), np.eye(4)[None])
    rays = plucker_rays(cam, 33, 33)
    assert rays.shape == (1, 6, 33, 33) and rays.dtype == torch.float32
    torch.testing.assert_close(rays[:, 3:].norm(dim=1), torch.ones(1, 33, 33))
    torch.testing.assert_close(rays[0, :, 16, 16], torch.tensor([0.0, 0, 0, 0, 0, 1]))
    assert rays[0, :3].abs().max() == 0  # origin at zero: no moment anywhere
    assert rays[0, 3, 16, 0] < 0 and rays[0, 4, 0, 16] < 0  # left column looks to -x, top row to -y


def test_plucker_moved_camera_spot_check() -> None:
    rng = np.random.default_rng(5)
    cam = random_path(rng, frames=3)
    h, w = 12, 20
    rays = plucker_rays(cam, h, w).double().numpy()
    assert rays.shape == (3, 6, h, w)
    np.testing.assert_allclose(np.linalg.norm(rays[:, 3:], axis=1), 1.0, atol=1e-6)
    for f, v, u in ((0, 0, 0), (1, 7, 13), (2, 11, 19)):
        k = cam.intrinsics_px(h, w)[f]
        d = cam.w2c[f, :3, :3].T @ np.linalg.solve(k, [u + 0.5, v + 0.5, 1.0])
        d /= np.linalg.norm(d)
        o = cam.camera_centers()[f]
        assert np.linalg.norm(o) > 1.0
        np.testing.assert_allclose(rays[f, 3:, v, u], d, atol=1e-6)
        np.testing.assert_allclose(rays[f, :3, v, u], np.cross(o, d), atol=1e-5)


# --- errors -------------------------------------------------------------------------------------------------------

GOOD = "0 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0"
ERROR_IDS = "count word nan fx0 not-orthonormal reflection no-frames missing extension bad-json".split()
ERROR_IDS += ["no-w2c", "short-row", "row-count", "bottom-row"]
IDENT = "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]"


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("cam.txt", f"url\n{GOOD}\n" + " ".join(["1"] * 12) + "\n", ["cam.txt:3:", "expected 19 numbers", "found 12"]),
        ("cam.txt", f"url\n{GOOD.replace(' 0.5 ', ' abc ', 1)}\n", ["cam.txt:2:", "'abc' is not a number"]),
        ("cam.txt", f"url\n{GOOD}\n{GOOD}\n{GOOD.replace(' 0 0 1 0', ' 0 0 nan 0')}\n", ["cam.txt:4:", "non-finite"]),
        ("cam.txt", f"url\n{GOOD.replace('0 0.5', '0 0', 1)}\n", ["cam.txt:2:", "fx=0"]),
        ("cam.txt", f"url\n{GOOD.replace('1 0 0 0 0 1', '1 0.2 0 0 0 1')}\n", ["cam.txt:2:", "orthonormal"]),
        ("cam.txt", f"url\n{GOOD.replace('1 0 0 0 0 1', '-1 0 0 0 0 1')}\n", ["cam.txt:2:", "determinant"]),
        ("cam.txt", "https://example.com\n\n", ["cam.txt:", "no camera frames"]),
        ("missing.txt", None, ["missing.txt:", "no such file"]),
        ("cam.yaml", "intrinsics: []\n", ["cam.yaml:", ".txt", ".json"]),
        ("cam.json", '{\n "intrinsics": [0.5, 0.5, 0.5, 0.5],\n "w2c": [[1, 2,]]\n}', ["cam.json:", "line 3"]),
        ("cam.json", '{"intrinsics": [0.5, 0.5, 0.5, 0.5]}', ["cam.json:", 'missing key "w2c"']),
        ("cam.json", '{"intrinsics": [[0.5, 0.5, 0.5, 0.5]], "w2c": [[[1, 0, 0]]]}', ["cam.json:", '"w2c"[0][0]']),
        (
            "cam.json",
            f'{{"intrinsics": [[1, 1, 0.5, 0.5]], "w2c": [{IDENT}, {IDENT}]}}',
            ["cam.json:", "1 rows", "2 frames"],
        ),
        (
            "cam.json",
            f'{{"intrinsics": [1, 1, 0.5, 0.5], "w2c": [{IDENT}, {IDENT.replace("1]]", "2]]")}]}}',
            ["frame 1", "bottom"],
        ),
    ],
    ids=ERROR_IDS,
)
def test_errors_name_file_and_line(tmp_path: Path, name: str, text: str | None, expected: list[str]) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError) as info:
        load_camera(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, (fragment, message)
