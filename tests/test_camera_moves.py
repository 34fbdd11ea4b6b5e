"""`fulldit camera`: each named move's geometry, sequences, pose-file conventions, the plot, and bad input -> exit 2."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fulldit.camera import MOVE_NAMES, CameraMove, CameraPath, build_path, describe, load_camera, make_move, parse_moves
from fulldit.camera.conventions import CONVENTIONS, from_opencv, load_camera_as, save_camera_as, to_opencv
from fulldit.camera.files import parse_re10k
from fulldit.camera.plot import path_figure
from fulldit.cli import main
from fulldit.errors import InputError

D = 2.0  # build_path's default target distance
TARGET = np.array([0.0, 0.0, D])


def c2w_rot(cam: CameraPath) -> np.ndarray:
    """(F, 3, 3) camera-to-world rotations: columns are the camera's x (right), y (down), z (forward) in the world."""
    return np.swapaxes(cam.w2c[:, :3, :3], 1, 2)


def axis_angle(rot: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit axis and angle (degrees) of a rotation matrix (angle in (0, 180))."""
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    angle = math.degrees(math.acos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))
    return axis / np.linalg.norm(axis), angle


def random_path(rng: np.random.Generator, frames: int = 7) -> CameraPath:
    w2c = np.tile(np.eye(4), (frames, 1, 1))
    for m in w2c:
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r))
        m[:3, :3], m[:3, 3] = (q if np.linalg.det(q) > 0 else -q), rng.normal(size=3) * 3
    return CameraPath(np.tile([0.8, 1.2, 0.5, 0.5], (frames, 1)), w2c)


# --- each move's geometry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["orbit-left", "orbit-right", "orbit-up", "orbit-down"])
def test_orbit_keeps_the_target_distance_and_looks_at_it(name: str) -> None:
    cam = build_path([CameraMove(name, 40.0)], frames=12)
    centres = cam.camera_centers()
    np.testing.assert_allclose(np.linalg.norm(centres - TARGET, axis=1), D, atol=1e-9)
    to_target = (TARGET - centres) / D
    np.testing.assert_allclose(c2w_rot(cam)[:, :, 2], to_target, atol=1e-9)  # optical axis through the target
    sideways = centres[-1] - centres[0]
    if name.endswith(("left", "right")):  # left/right swing in the horizontal plane, to the camera's left/right
        assert np.abs(centres[:, 1]).max() < 1e-9 and np.sign(sideways[0]) == (-1 if name.endswith("left") else 1)
        np.testing.assert_allclose(c2w_rot(cam)[:, :, 0][:, 1], 0, atol=1e-9)  # no roll: x stays horizontal
    else:  # up/down swing in the vertical plane; up is -y
        assert np.abs(centres[:, 0]).max() < 1e-9 and np.sign(sideways[1]) == (-1 if name.endswith("up") else 1)
    _, angle = axis_angle(c2w_rot(cam)[-1])
    assert angle == pytest.approx(40.0)


def test_orbit_positions_are_an_arc_around_the_target() -> None:
    """The issue's check: the camera centres lie on a circle about the target, visibly bent, not on a line."""
    centres = build_path("orbit-left 30deg", frames=16).camera_centers()
    np.testing.assert_allclose(np.hypot(centres[:, 0] - TARGET[0], centres[:, 2] - TARGET[2]), D, atol=1e-9)
    chord = (centres[-1] - centres[0]) / np.linalg.norm(centres[-1] - centres[0])
    off_chord = np.linalg.norm(np.cross(centres - centres[0], chord), axis=1)
    assert off_chord.max() == pytest.approx(D * (1 - math.cos(math.radians(15))), rel=0.02)  # the sagitta, 0.068


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("dolly-in", (0, 0, 1)),
        ("dolly-out", (0, 0, -1)),
        ("truck-right", (1, 0, 0)),
        ("truck-left", (-1, 0, 0)),
        ("pedestal-up", (0, -1, 0)),
        ("pedestal-down", (0, 1, 0)),
    ],
)
def test_translations_move_along_one_camera_axis_without_turning(name: str, direction: tuple[int, int, int]) -> None:
    cam = build_path([CameraMove(name, 0.7)], frames=8)
    centres = cam.camera_centers()
    steps = centres @ np.array(direction, dtype=float)
    np.testing.assert_allclose(centres - steps[:, None] * np.array(direction), 0, atol=1e-12)  # parallel to the axis
    np.testing.assert_allclose(steps, np.linspace(0, 0.7, 8), atol=1e-12)  # the right way, evenly
    np.testing.assert_allclose(cam.w2c[:, :3, :3], np.broadcast_to(np.eye(3), (8, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(cam.intrinsics, np.broadcast_to(cam.intrinsics[0], (8, 4)))


def test_dolly_follows_the_view_axis_after_a_turn() -> None:
    """A dolly after a pan slides along the turned optical axis, not the world's z."""
    cam = build_path("pan-right 40deg then dolly-in 1", frames=9)
    start, end = cam.camera_centers()[4], cam.camera_centers()[-1]
    np.testing.assert_allclose(end - start, c2w_rot(cam)[4][:, 2], atol=1e-12)
    np.testing.assert_allclose(cam.w2c[4:, :3, :3], np.broadcast_to(cam.w2c[4, :3, :3], (5, 3, 3)), atol=1e-12)


@pytest.mark.parametrize(
    ("name", "axis", "check"),
    [
        ("pan-right", (0, 1, 0), lambda r: r[0, 2] > 0),  # view turns towards +x
        ("pan-left", (0, -1, 0), lambda r: r[0, 2] < 0),
        ("tilt-up", (1, 0, 0), lambda r: r[1, 2] < 0),  # view turns towards -y (up)
        ("tilt-down", (-1, 0, 0), lambda r: r[1, 2] > 0),
        ("roll-cw", (0, 0, 1), lambda r: r[1, 0] > 0),  # right axis turns down: clockwise seen from behind
        ("roll-ccw", (0, 0, -1), lambda r: r[1, 0] < 0),
    ],
)
def test_rotations_turn_about_the_right_axis_in_place(name: str, axis: tuple[int, int, int], check) -> None:
    cam = build_path([CameraMove(name, 25.0)], frames=6)
    np.testing.assert_allclose(cam.camera_centers(), 0, atol=1e-12)
    for f, rot in enumerate(c2w_rot(cam)[1:], start=1):
        got_axis, angle = axis_angle(rot)
        np.testing.assert_allclose(got_axis, axis, atol=1e-9)
        assert angle == pytest.approx(25.0 * f / 5)
    assert check(c2w_rot(cam)[-1])


@pytest.mark.parametrize(("name", "ratio"), [("zoom-in", 2.0), ("zoom-out", 0.5)])
def test_zoom_changes_only_the_focal_length(name: str, ratio: float) -> None:
    cam = build_path([CameraMove(name, 2.0)], frames=5, width=160, height=90)
    still = build_path("static", frames=5, width=160, height=90)
    np.testing.assert_array_equal(cam.w2c, still.w2c)  # extrinsics identical
    fx, fy, cx, cy = cam.intrinsics.T
    np.testing.assert_allclose(fx / fx[0], ratio ** np.linspace(0, 1, 5))  # geometric: equal ratios per step
    np.testing.assert_allclose(fy / fx, 160 / 90)  # square pixels throughout
    np.testing.assert_array_equal(np.stack([cx, cy]), 0.5)
    assert fx[0] == pytest.approx(0.5 / math.tan(math.radians(30)))  # 60 deg horizontal field of view


# --- sequences ----------------------------------------------------------------------------------------------------


def test_sequence_splits_frames_and_continues_where_the_last_move_ended() -> None:
    seq = build_path("orbit-left 30deg then dolly-in 0.5", frames=16)  # 15 steps: 8 for the orbit, 7 for the dolly
    orbit = build_path("orbit-left 30deg", frames=9)
    np.testing.assert_allclose(seq.w2c[:9], orbit.w2c, atol=1e-12)
    centres = seq.camera_centers()
    np.testing.assert_allclose(centres[-1] - centres[8], 0.5 * c2w_rot(seq)[8][:, 2], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(TARGET - centres[-1]), D - 0.5, atol=1e-9)  # dollied at the target
    assert np.linalg.norm(np.diff(centres, axis=0), axis=1).max() < 0.15  # no jump at the joint


def test_orbit_after_a_dolly_circles_the_same_target() -> None:
    cam = build_path("dolly-in 0.5 then orbit-left 60deg", frames=11)
    np.testing.assert_allclose(np.linalg.norm(cam.camera_centers()[5:] - TARGET, axis=1), D - 0.5, atol=1e-9)


def test_pan_after_a_tilt_keeps_the_horizon_level() -> None:
    cam = build_path("tilt-up 20deg then pan-right 40deg", frames=9)
    np.testing.assert_allclose(c2w_rot(cam)[:, 1, 0], 0, atol=1e-12)  # the right axis has no vertical component
    assert math.degrees(math.asin(-c2w_rot(cam)[-1][1, 2])) == pytest.approx(20.0)  # still looking 20 deg up


def test_smooth_ease_starts_and_stops_at_rest() -> None:
    lin = build_path("truck-right 1", frames=11).camera_centers()[:, 0]
    smooth = build_path("truck-right 1", frames=11, ease="smooth").camera_centers()[:, 0]
    assert smooth[-1] == pytest.approx(lin[-1]) and smooth[1] < 0.5 * lin[1] and (np.diff(smooth) > 0).all()


def test_parse_and_describe() -> None:
    moves = parse_moves(
        "Orbit-Left 30deg then dolly-in 0.5m, zoom-in 2x then pan-right 0.5 rad then static then tilt-up"
    )
    assert [m.name for m in moves] == ["orbit-left", "dolly-in", "zoom-in", "pan-right", "static", "tilt-up"]
    assert [m.amount for m in moves[:3]] == [30.0, 0.5, 2.0] and moves[5].amount == 30.0  # the default
    assert moves[3].amount == pytest.approx(math.degrees(0.5))
    assert parse_moves(describe(moves)) == moves
    assert {m.split("-")[0] for m in MOVE_NAMES} == {
        "pan", "tilt", "roll", "dolly", "truck", "pedestal", "orbit", "zoom", "static",
    }  # fmt: skip
    assert make_move("dolly-in") == CameraMove("dolly-in", 0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("orbit-lft 30deg", "did you mean 'orbit-left'"),
        ("spin 3", "unknown camera move 'spin'"),
        ("pan-left -10deg", "must be >= 0"),
        ("zoom-in 0.5", "focal ratio >= 1"),
        ("dolly-in 30deg", "dolly-in takes m"),
        ("orbit-left 2x", "orbit-left takes deg"),
        ("pan-left lots", "cannot read 'pan-left lots'"),
        ("orbit-left then", "cannot read ''"),
        ("static 3", "static takes no amount"),
        ("", "empty camera path"),
    ],
)
def test_bad_moves_are_input_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        build_path(text, frames=16)


def test_bad_path_settings_are_input_errors() -> None:
    for kwargs, message in [
        ({"frames": 1}, "at least 2 frames"),
        ({"frames": 2, "moves": "pan-left then pan-right"}, "2 moves need at least 3 frames"),
        ({"fov_deg": 180.0}, "field of view"),
        ({"width": 0}, "width"),
        ({"target_distance": -1.0}, "target distance"),
        ({"ease": "fast"}, "unknown easing"),
    ]:
        with pytest.raises(InputError, match=message):
            build_path(**{"moves": "pan-left", **kwargs})
    with pytest.raises(InputError, match="finite"):
        CameraMove("pan-left", math.nan)


# --- conventions --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["c2w", "opengl"])
def test_conventions_round_trip(tmp_path: Path, convention: str) -> None:
    cam = random_path(np.random.default_rng(0))
    np.testing.assert_allclose(to_opencv(from_opencv(cam.w2c, convention), convention), cam.w2c, atol=1e-12)
    save_camera_as(cam, tmp_path / "cam.txt", convention)
    back = load_camera_as(tmp_path / "cam.txt", convention)
    np.testing.assert_allclose(back.w2c, cam.w2c, atol=1e-6)
    np.testing.assert_array_equal(back.intrinsics, cam.intrinsics)
    assert np.abs(load_camera(tmp_path / "cam.txt").w2c - cam.w2c).max() > 0.1  # the file really holds another form


def test_conventions_mean_what_they_say() -> None:
    """c2w's last column is the camera centre; opengl's camera looks down its -z with y up."""
    cam = build_path("pan-right 30deg then dolly-in 1 then tilt-up 10deg", frames=7)
    c2w, gl = from_opencv(cam.w2c, "c2w"), from_opencv(cam.w2c, "opengl")
    np.testing.assert_allclose(c2w[:, :3, 3], cam.camera_centers(), atol=1e-12)
    np.testing.assert_allclose(gl[:, :3, 3], cam.camera_centers(), atol=1e-12)
    np.testing.assert_allclose(-gl[:, :3, 2], c2w_rot(cam)[:, :, 2], atol=1e-12)  # forward = -z
    np.testing.assert_allclose(gl[:, :3, 1], -c2w_rot(cam)[:, :, 1], atol=1e-12)  # up = -(OpenCV's down)
    assert CONVENTIONS == ("opencv", "c2w", "opengl")
    with pytest.raises(InputError, match="unknown pose convention"):
        to_opencv(cam.w2c, "blender")


# --- the command ----------------------------------------------------------------------------------------------------


def test_the_issue_check_writes_a_readable_file_and_a_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cam_txt = tmp_path / "cam.txt"
    assert main(["camera", "--move", "orbit-left", "--degrees", "30", "--frames", "16", "-o", str(cam_txt)]) == 0
    cam = parse_re10k(cam_txt.read_text(), str(cam_txt))
    assert cam.num_frames == 16
    np.testing.assert_allclose(cam.w2c, build_path("orbit-left 30deg", frames=16).w2c, atol=1e-12)
    assert main(["camera", "--plot", str(cam_txt)]) == 0
    png = tmp_path / "cam.png"
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 400 and img.height > 200
        assert len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 20  # drawn, not blank
    assert "wrote" in capsys.readouterr().out


def test_plot_draws_the_orbit_as_an_arc() -> None:
    fig = path_figure(build_path("orbit-left 30deg", frames=16), target=TARGET)
    top, side = fig.axes[:2]
    xz = top.lines[0].get_xydata()  # the path line through the camera centres, seen from above
    assert xz.shape == (16, 2)  # through every camera, not just the ends
    np.testing.assert_allclose(np.hypot(xz[:, 0] - TARGET[0], xz[:, 1] - TARGET[2]), D, atol=1e-9)
    assert np.ptp(xz[:, 0]) > 0.9 and np.ptp(xz[:, 1]) > 0.2  # bent: both coordinates change
    np.testing.assert_allclose(side.lines[0].get_xydata()[:, 1], 0, atol=1e-12)  # level, seen from the side


def test_plot_is_drawn_in_the_first_cameras_frame() -> None:
    """A pose file's world is arbitrary (Blender's is z-up): moving the whole path rigidly changes nothing drawn."""
    cam = build_path("orbit-up 40deg then truck-right 0.5", frames=10)
    world = random_path(np.random.default_rng(1), frames=1).w2c[0]
    moved = CameraPath(cam.intrinsics, cam.w2c @ np.linalg.inv(world))
    for a, b in zip(path_figure(cam).axes[:2], path_figure(moved).axes[:2]):
        for la, lb in zip(a.lines, b.lines):
            np.testing.assert_allclose(la.get_xydata(), lb.get_xydata(), atol=1e-9)


def test_path_string_and_conversion_by_the_command(tmp_path: Path) -> None:
    text = "orbit-left 30deg then dolly-in 0.5"
    native, gl, back = tmp_path / "cam.txt", tmp_path / "gl.json", tmp_path / "back.txt"
    args = ["--frames", "16", "--width", "832", "--height", "480", "--fov", "50"]
    assert main(["camera", "--path", text, *args, "-o", str(native)]) == 0
    assert main(["camera", "--path", text, *args, "--to", "opengl", "-o", str(gl)]) == 0
    assert main(["camera", "--convert", str(gl), "--from", "opengl", "-o", str(back)]) == 0
    want = build_path(text, frames=16, width=832, height=480, fov_deg=50)
    for path in (native, back):
        got = load_camera(path)
        np.testing.assert_allclose(got.w2c, want.w2c, atol=1e-6)
        np.testing.assert_allclose(got.intrinsics, want.intrinsics, atol=1e-12)
    assert main(["camera", "--plot", str(gl), "--convention", "opengl", "-o", str(tmp_path / "gl.png")]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--move", "orbit-lft", "-o", "out.txt"], "unknown camera move 'orbit-lft'"),
        (["--move", "orbit-left", "--degrees", "-5", "-o", "out.txt"], "must be >= 0"),
        (["--move", "dolly-in", "--degrees", "5", "-o", "out.txt"], "dolly-in takes --distance, not --degrees"),
        (["--move", "zoom-in", "--zoom", "0.5", "-o", "out.txt"], "argument --zoom: 0.5: must be at least 1"),
        (["--path", "orbit-left 30deg then dolly-in 0.5", "--degrees", "3", "-o", "out.txt"], "goes with --move"),
        (["--path", "orbit-left 30deg then dolly-in 0.5", "--frames", "2", "-o", "out.txt"], "at least 3 frames"),
        (["--move", "pan-left", "--frames", "1", "-o", "out.txt"], "argument --frames: 1: must be at least 2"),
        (["--move", "pan-left", "--to", "blender", "-o", "out.txt"], "unknown pose convention 'blender'"),
        (["--move", "pan-left", "--from", "opengl", "-o", "out.txt"], "use --to to write"),
        (["--move", "pan-left", "-o", "out.png"], "must end in .txt"),
        (["--move", "pan-left"], "-o OUT.txt"),
        (["--plot", "bad.txt"], "bad.txt:2: expected 19 numbers"),
        (["--plot", "missing.txt"], "missing.txt: no such file"),
        (["--plot", "good.txt", "-o", "x.jpg"], "must be a .png"),
        (["--convert", "good.txt", "--from", "nerf", "-o", "x.txt"], "unknown pose convention 'nerf'"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.txt").write_text("url\n1 2 3\n")
    save_camera_as(build_path("pan-left", frames=4), "good.txt")
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        code = main(["camera", *args])
    except SystemExit as exc:  # argparse rejects a malformed option value before the command runs
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fulldit: error:") and "\n" not in err and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, not even a partial file


def test_camera_help_lists_its_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["camera", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    for option in ["--move", "--path", "--plot", "--convert", "--degrees", "--distance", "--zoom", "--frames"]:
        assert option in out
    for option in ["--width", "--height", "--fov", "--target-distance", "--ease", "--convention", "--from", "--to"]:
        assert option in out
