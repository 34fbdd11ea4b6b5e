"""Camera-control metric: recover the camera path from the pixels of a video and compare it with the requested one.

Two estimators, chosen by the requested move (see `is_rotation_only`):

* `estimate_poses(..., rotation_only=False)`: structure from motion with COLMAP's Python bindings (pycolmap): SIFT
  features, exhaustive matching, and the global mapper (GLOMAP) with every frame's intrinsics known and held fixed,
  so a zoom is a change of intrinsics and never of pose. On RealEstate10K this was the most reliable setting (see
  docs/findings.md, "Camera metrics from generated frames"). Two changes from COLMAP's defaults matter on
  small frames of rendered rooms (repeated tiles and planks): the two-view RANSAC threshold is 1 px per 128 px
  instead of 4 px (with 4 px, forward moves came out with rotations wrong by several radians), and a
  reconstruction must hold every frame on at least `MIN_POINTS_PER_FRAME` points (the wrong reconstructions
  that remained were the ones with a frame missing or resting on a handful of points). Frames smaller than 128 px
  are upsampled first (at 64 px half the clips failed without it).
* `estimate_poses(..., rotation_only=True)`: for pans, tilts, rolls, zooms and static shots, where SfM cannot
  triangulate (no parallax). Frames related by a pure rotation are related by the homography `K_i R_ij K_j^-1`, so
  OpenCV SIFT matches + RANSAC homographies select inliers between all pairs of frames, each pair's rotation is the
  best rotation between the inliers' viewing rays (`K^-1 x`; the least-squares form of `K_i^-1 H K_j` projected to
  SO(3)), and the per-frame rotations are found by rotation averaging over all pairs (chained along the strongest
  pairs, then refined), so errors do not accumulate along the clip. Translation is zero.

`camera_errors` then scores the estimate against the true path with CamI2V's protocol (see `PROTOCOL`).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fulldit.camera.path import STILL_EPS

__all__ = ["PoseEstimate", "estimate_poses", "camera_errors", "is_rotation_only", "PROTOCOL"]

PROTOCOL = (
    "Camera errors follow CamI2V. The path is recovered from the generated video's pixels with the requested "
    "per-frame intrinsics known and fixed (a zoom changes intrinsics, never pose): for moves that translate, by "
    "structure from motion (pycolmap 4 global mapper GLOMAP; SIFT <= 8192 features on frames of at least 128 px; "
    "exhaustive matching; two-view RANSAC threshold 1 px per 128 px; every frame must be registered on >= 12 "
    "triangulated points, else the clip counts as failed); for pans, tilts, rolls, zooms and static shots, which "
    "have no parallax, by rotation averaging of pairwise rotations fitted to RANSAC homography inliers "
    "(translation zero). Both paths are made relative to frame 0 as camera-to-world poses inv(c2w_0) @ c2w_i and "
    "each path's translations are divided by its own largest camera-centre distance from frame 0. RotErr is the "
    "sum over frames of the geodesic angle in radians between the two relative rotations; TransErr the sum of the "
    "Euclidean distances between the normalised relative translations (camera centres in frame 0's camera axes); "
    "CamMC the sum of the Frobenius norms of the differences of the normalised relative 3x4 poses. For a true path "
    "that does not translate TransErr is undefined (NaN; such clips are counted by translating = 0 and left out of "
    "TransErr averages) and CamMC compares the rotation blocks only. At least four incompatible conventions "
    "circulate in papers (each path normalised by its own largest translation, as here; scale taken from the "
    "first camera step; a similarity (Sim(3)/Umeyama) alignment to the true path before ATE/RPE; no "
    "normalisation), on top of sums vs per-frame means, radians vs degrees and world-to-camera vs camera-to-world "
    "translations, so numbers are comparable only under the same protocol."
)

ROTATION_KINDS = frozenset({"static", "pan", "tilt", "roll", "zoom"})  # moves that never move the camera centre
TRANSLATION_KINDS = frozenset({"dolly", "truck", "orbit", "pedestal", "boom", "crane", "arc", "track"})
MIN_INLIERS = 20  # homography inliers for a pair of frames to count in rotation averaging
MIN_INLIER_RATIO = 0.3  # ... and the fraction of the pair's ratio-test matches they must be
HOMOGRAPHY_PX = 1.5  # RANSAC reprojection threshold (pixels) for the homographies
SIFT_CONTRAST = 0.01  # OpenCV SIFT contrast threshold (default 0.04: too few features on small, smooth frames)
SFM_RANSAC = 1.0 / 128  # two-view RANSAC threshold as a fraction of the shorter side (1 px at 128), at least 1 px
MIN_SIDE = 128  # smaller frames are upsampled to this shorter side before feature extraction (intrinsics follow)
MIN_POINTS_PER_FRAME = 12  # a frame's pose must rest on at least this many triangulated points


@dataclass
class PoseEstimate:
    """The camera path recovered from a video."""

    w2c: np.ndarray | None  # (F, 4, 4) world-to-camera relative to frame 0 (frame 0 = identity); None if failed
    method: str  # "sfm" | "rotation" | "failed"
    registered: int  # frames with a pose
    message: str  # why it failed / notes, one line


# --------------------------------------------------------------------------------------------------- geometry


def _project_so3(m: np.ndarray) -> np.ndarray:
    """The rotation nearest to `m` in the Frobenius norm."""
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _angle(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Geodesic angle(s) in radians between rotation matrices (..., 3, 3).

    `2 atan2(|R1 - R2|_F / sqrt(8), sqrt((1 + tr(R1^T R2)) / 4))`: the same as `arccos((tr - 1) / 2)`, but exact
    near 0 (where arccos turns rounding errors of 1e-16 into angles of 1e-8) and near pi.
    """
    diff = np.linalg.norm((r1 - r2).reshape(*r1.shape[:-2], 9), axis=-1)
    tr = np.einsum("...ji,...ji->...", r1, r2)  # trace(r1^T r2)
    return 2.0 * np.arctan2(diff / math.sqrt(8.0), np.sqrt(np.clip((1.0 + tr) / 4.0, 0.0, None)))


def _relative_c2w(w2c: np.ndarray) -> np.ndarray:
    """(F, 4, 4) camera-to-world poses relative to frame 0: inv(c2w_0) @ c2w_i = w2c_0 @ inv(w2c_i)."""
    w2c = np.asarray(w2c, dtype=np.float64)
    return w2c[0] @ np.linalg.inv(w2c)


def _scene_scale(w2c: np.ndarray) -> float:
    centres = -np.einsum("fji,fj->fi", w2c[:, :3, :3], w2c[:, :3, 3])
    return max(1.0, float(np.abs(centres).max()))


def _normalised(rel: np.ndarray, scene: float) -> tuple[np.ndarray, bool]:
    """Translations divided by the largest distance from frame 0; unchanged when the path does not translate."""
    dist = float(np.linalg.norm(rel[:, :3, 3], axis=1).max())
    if dist > STILL_EPS * scene:
        rel = rel.copy()
        rel[:, :3, 3] /= dist
        return rel, True
    return rel, False


# ------------------------------------------------------------------------------------------------------ errors


def camera_errors(estimated_w2c: np.ndarray, true_w2c: np.ndarray) -> dict[str, float]:
    """RotErr, TransErr and CamMC of an estimated path against the true one, summed over frames (CamI2V).

    Both paths are made relative to frame 0 as camera-to-world poses `inv(c2w_0) @ c2w_i`, so the translation
    compared is frame i's camera centre in frame 0's camera axes (CamI2V compares the translation column of the
    relative camera-to-world poses; the rotation angle is the same for either direction). Each path's
    translations are divided by its own largest camera-centre distance from frame 0, which removes the arbitrary
    scale of structure from motion.

    * `rot_err`: sum over frames of the geodesic angle (radians) between estimated and true relative rotations.
    * `trans_err`: sum over frames of the Euclidean distance between the normalised relative translations.
    * `cammc`: sum over frames of the Frobenius norm of the difference of the normalised relative 3x4 poses.
    * `translating`: 1.0 if the true path translates (largest centre distance above 1e-6 of the scene scale, as
      in `CameraPath.relative`), else 0.0.

    A non-translating true path (static, pan, tilt, roll, zoom) has no translation scale to normalise by, and an
    estimate's translation, whatever its size, is in the arbitrary units of the reconstruction: any number built
    from it would be noise amplified by the normalisation (or a unit-dependent raw length). So for such a path
    `trans_err` is NaN (aggregate it with `translating` as the count of defined values) and `cammc` compares only
    the 3x3 rotation blocks, which keeps CamMC defined and comparable between all estimates of such clips. An
    estimate that does not translate while the true path does scores its full normalised translation as error.
    """
    est = np.asarray(estimated_w2c, dtype=np.float64)
    true = np.asarray(true_w2c, dtype=np.float64)
    if est.ndim != 3 or est.shape[1:] != (4, 4) or true.shape != est.shape:
        raise ValueError(f"camera_errors: need two (F, 4, 4) paths of equal length, got {est.shape} and {true.shape}")
    if not (np.isfinite(est).all() and np.isfinite(true).all()):
        raise ValueError("camera_errors: the paths contain non-finite values")
    rel_est, rel_true = _relative_c2w(est), _relative_c2w(true)
    rot_err = float(_angle(rel_est[:, :3, :3], rel_true[:, :3, :3]).sum())
    rel_true, translating = _normalised(rel_true, _scene_scale(true))
    if translating:
        rel_est, _ = _normalised(rel_est, _scene_scale(est))
        trans_err = float(np.linalg.norm(rel_est[:, :3, 3] - rel_true[:, :3, 3], axis=1).sum())
        cammc = float(np.linalg.norm((rel_est[:, :3, :4] - rel_true[:, :3, :4]).reshape(len(est), 12), axis=1).sum())
    else:
        trans_err = math.nan
        cammc = float(np.linalg.norm((rel_est[:, :3, :3] - rel_true[:, :3, :3]).reshape(len(est), 9), axis=1).sum())
    return {"rot_err": rot_err, "trans_err": trans_err, "cammc": cammc, "translating": float(translating)}


# ------------------------------------------------------------------------------------------------------- moves


def is_rotation_only(move: str | dict | None) -> bool:
    """Whether a move keeps the camera centre still: static, pan, tilt, roll, zoom, and combinations of them.

    `move` is `Clip.meta["move"]` (a dict with "name" and "parts", see `trajectories.Move.to_dict`) or a name like
    "pan-left" or "zoom-in+pan-right". An empty or missing move (a clip of unknown motion) is not rotation-only,
    so it gets the general estimator. An unknown kind of move raises ValueError rather than silently picking one.
    """
    if not move:
        return False
    if isinstance(move, dict):
        parts = move.get("parts")
        if parts is not None:
            kinds = [str(p["kind"]) if isinstance(p, dict) else str(p[0]) for p in parts] or ["static"]
        else:
            return is_rotation_only(move.get("name"))
    elif isinstance(move, str):
        kinds = [part.strip().partition("-")[0] for part in move.split("+")]
    else:
        raise ValueError(f"is_rotation_only: expected a move name or dict, got {type(move).__name__}")
    unknown = [k for k in kinds if k not in ROTATION_KINDS | TRANSLATION_KINDS]
    if unknown:
        raise ValueError(f"is_rotation_only: unknown kind of move {unknown[0]!r} in {move!r}")
    return all(k in ROTATION_KINDS for k in kinds)


# -------------------------------------------------------------------------------------------------- estimation


def _frames_uint8(video: torch.Tensor) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB frames of a (F, 3, H, W) video in [0, 1]."""
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"estimate_poses: expected a (F, 3, H, W) tensor, got {getattr(video, 'shape', video)}")
    v = video.detach().to("cpu", torch.float32).nan_to_num(0.0).clamp(0.0, 1.0)
    return (v.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)


def _k_matrices(intrinsics: np.ndarray, frames: int, height: int, width: int) -> np.ndarray:
    intr = np.asarray(intrinsics, dtype=np.float64)
    if intr.ndim == 1:
        intr = np.tile(intr, (frames, 1))
    if intr.shape != (frames, 4) or not np.isfinite(intr).all() or (intr[:, :2] <= 0).any():
        raise ValueError(f"estimate_poses: need (F={frames}, 4) positive normalised intrinsics, got {intr.shape}")
    k = np.zeros((frames, 3, 3))
    k[:, 0, 0], k[:, 0, 2] = intr[:, 0] * width, intr[:, 2] * width
    k[:, 1, 1], k[:, 1, 2] = intr[:, 1] * height, intr[:, 3] * height
    k[:, 2, 2] = 1.0
    return k


def _rays(points: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Unit viewing rays of pixel points (N, 2) (continuous coordinates, as OpenCV keypoints) under K."""
    # OpenCV keypoint (0, 0) is the centre of the top-left pixel, which is (0.5, 0.5) in fulldit's convention
    x = (points[:, 0] + 0.5 - k[0, 2]) / k[0, 0]
    y = (points[:, 1] + 0.5 - k[1, 2]) / k[1, 1]
    rays = np.stack([x, y, np.ones_like(x)], axis=1)
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def _pair_rotation(
    kp: list[np.ndarray], desc: list[np.ndarray | None], k: np.ndarray, j: int, i: int
) -> tuple[np.ndarray, int] | None:
    """Rotation R_ij (camera j axes -> camera i axes) and its inlier count, or None if the pair does not match."""
    if desc[i] is None or desc[j] is None or len(kp[i]) < MIN_INLIERS or len(kp[j]) < MIN_INLIERS:
        return None
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc[j], desc[i], k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    pj = kp[j][[m.queryIdx for m in good]]
    pi = kp[i][[m.trainIdx for m in good]]
    h, mask = cv2.findHomography(pj, pi, cv2.RANSAC, HOMOGRAPHY_PX, maxIters=4000, confidence=0.9995)
    if h is None or mask is None:
        return None
    inl = mask.ravel().astype(bool)
    n = int(inl.sum())
    if n < MIN_INLIERS or n < MIN_INLIER_RATIO * len(good):
        return None
    rj, ri = _rays(pj[inl], k[j]), _rays(pi[inl], k[i])
    r = _project_so3(ri.T @ rj)  # argmin_R sum |ri - R rj|^2 (Kabsch)
    resid = np.linalg.norm(ri - rj @ r.T, axis=1)  # chord ~ angle (radians)
    pixel = 1.0 / float(np.mean([k[i, 0, 0], k[i, 1, 1]]))  # one pixel as an angle
    keep = resid < 3.0 * HOMOGRAPHY_PX * pixel
    if keep.sum() < MIN_INLIERS:
        return None
    r = _project_so3(ri[keep].T @ rj[keep])  # refit on the rays the rotation model explains
    return r, int(keep.sum())


def _rotation_only(frames: np.ndarray, k: np.ndarray, max_features: int, seed: int) -> PoseEstimate:
    n = len(frames)
    cv2.setRNGSeed(seed)
    sift = cv2.SIFT_create(nfeatures=max_features, contrastThreshold=SIFT_CONTRAST)
    kp, desc = [], []
    for f in frames:
        keypoints, d = sift.detectAndCompute(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), None)
        kp.append(np.array([p.pt for p in keypoints], dtype=np.float32).reshape(-1, 2))
        desc.append(d)
    if n == 1:
        return PoseEstimate(np.eye(4)[None], "rotation", 1, "one frame")
    counts = [len(p) for p in kp]
    if max(counts) < MIN_INLIERS:
        return PoseEstimate(None, "failed", 0, f"rotation: too few SIFT features (at most {max(counts)} per frame)")
    edges: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
    for i in range(n):
        for j in range(i):
            cv2.setRNGSeed(seed + 7919 * i + j)  # each pair's RANSAC independent of the order of the others
            est = _pair_rotation(kp, desc, k, j, i)
            if est is not None:
                edges[(j, i)] = est
    # spanning tree from frame 0 along the strongest pairs (Prim), then chain the rotations along it
    rot: list[np.ndarray | None] = [None] * n
    rot[0] = np.eye(3)
    while True:
        best = None
        for (j, i), (r, w) in edges.items():
            if (rot[j] is None) != (rot[i] is None) and (best is None or w > best[2]):
                best = (j, i, w, r)
        if best is None:
            break
        j, i, _, r = best
        if rot[i] is None:
            rot[i] = r @ rot[j]  # R_i = R_ij R_j
        else:
            rot[j] = r.T @ rot[i]
    missing = [i for i in range(n) if rot[i] is None]
    if missing:
        return PoseEstimate(
            None, "failed", n - len(missing),
            f"rotation: {len(missing)} of {n} frames match no other frame (homography with >= {MIN_INLIERS} "
            f"inliers); first unmatched frame {missing[0]}; {len(edges)} matched pairs",
        )  # fmt: skip
    # rotation averaging: Gauss-Seidel sweeps, each frame the robustly weighted chordal mean of its neighbours' votes
    rots = np.array(rot)
    for _ in range(20):
        change = 0.0
        for i in range(1, n):
            m = np.zeros((3, 3))
            for (a, b), (r, w) in edges.items():
                if b == i:
                    vote = r @ rots[a]
                elif a == i:
                    vote = r.T @ rots[b]
                else:
                    continue
                res = float(_angle(vote, rots[i]))
                m += w / (1.0 + (res / 0.02) ** 2) * vote  # Cauchy-like weight: one-degree residuals count less
            new = _project_so3(m)
            change = max(change, float(_angle(new, rots[i])))
            rots[i] = new
        if change < 1e-7:
            break
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, :3, :3] = rots @ rots[0].T
    return PoseEstimate(w2c, "rotation", n, f"rotation averaging over {len(edges)} of {n * (n - 1) // 2} pairs")


def _sfm(frames: np.ndarray, k: np.ndarray, max_features: int, seed: int, work: Path) -> PoseEstimate:
    import pycolmap

    n, h, w = frames.shape[:3]
    images, out, db_path = work / "images", work / "sparse", work / "database.db"
    images.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{i:05d}.png" for i in range(n)]
    for name, f in zip(names, frames):
        cv2.imwrite(str(images / name), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))

    pycolmap.set_random_seed(seed)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    extract = pycolmap.FeatureExtractionOptions()
    extract.num_threads = 1
    extract.use_gpu = False
    extract.sift.max_num_features = int(max_features)
    pycolmap.extract_features(
        db_path, images, image_names=names, camera_mode=pycolmap.CameraMode.PER_IMAGE, reader_options=reader,
        extraction_options=extract, device=pycolmap.Device.cpu,
    )  # fmt: skip
    # the known intrinsics of every frame (pixel centres at +0.5 in both COLMAP and fulldit), marked as priors
    db = pycolmap.Database.open(db_path)
    try:
        features = [db.num_keypoints_for_image(im.image_id) for im in db.read_all_images()]
        for im in db.read_all_images():
            i = names.index(im.name)
            cam = db.read_camera(im.camera_id)
            cam.params = [k[i, 0, 0], k[i, 1, 1], k[i, 0, 2], k[i, 1, 2]]
            cam.has_prior_focal_length = True
            db.update_camera(cam)
    finally:
        db.close()
    if not features or max(features) < 15:
        return PoseEstimate(None, "failed", 0, f"sfm: too few SIFT features (at most {max(features, default=0)})")

    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = 1
    matching.use_gpu = False
    verify = pycolmap.TwoViewGeometryOptions()
    verify.ransac.random_seed = seed
    verify.ransac.num_threads = 1
    # COLMAP's default (4 px) lets wrong two-view geometries through on small frames with repeated textures
    verify.ransac.max_error = max(1.0, SFM_RANSAC * min(h, w))
    pycolmap.match_exhaustive(
        db_path, matching_options=matching, verification_options=verify, device=pycolmap.Device.cpu
    )

    opts = pycolmap.GlobalPipelineOptions()
    opts.random_seed = seed
    opts.num_threads = 1
    mapper = opts.mapper
    mapper.random_seed = seed
    mapper.num_threads = 1
    mapper.rotation_averaging.random_seed = seed
    mapper.global_positioning.random_seed = seed
    mapper.global_positioning.use_gpu = False
    mapper.retriangulation.random_seed = seed
    ba = mapper.bundle_adjustment
    ba.refine_focal_length = False
    ba.refine_principal_point = False
    ba.refine_extra_params = False
    ba.ceres.use_gpu = False
    ba.ceres.solver_options.num_threads = 1
    recs = pycolmap.global_mapping(db_path, images, out, opts)
    if not recs:
        return PoseEstimate(
            None, "failed", 0, "sfm: the global mapper built no reconstruction (too few verified matches)"
        )
    rec = max(recs.values(), key=lambda r: r.num_reg_images())

    poses: dict[int, np.ndarray] = {}
    weak: list[int] = []
    drift = 0.0
    for image_id in rec.reg_image_ids():
        im = rec.image(image_id)
        i = names.index(im.name)
        if im.num_points3D < MIN_POINTS_PER_FRAME:  # a pose resting on a handful of points is a guess
            weak.append(i)
            continue
        m = np.eye(4)
        m[:3] = im.cam_from_world().matrix()
        poses[i] = m
        p = np.asarray(im.camera.params, dtype=np.float64)
        drift = max(drift, float(np.abs(p - [k[i, 0, 0], k[i, 1, 1], k[i, 0, 2], k[i, 1, 2]]).max()))
    registered = len(poses)
    if registered < n:
        missing = [i for i in range(n) if i not in poses]
        return PoseEstimate(
            None, "failed", registered,
            f"sfm: {registered} of {n} frames registered with >= {MIN_POINTS_PER_FRAME} points ({len(recs)} "
            f"reconstruction(s)); missing {missing[:8]}, of which weakly supported {sorted(weak)[:8]}",
        )  # fmt: skip
    note = f"sfm: {n}/{n} frames registered, {rec.num_points3D()} points"
    if drift > 1e-6:
        note += f"; intrinsics moved by up to {drift:.3g} px"
    w2c = np.array([poses[i] for i in range(n)])
    w2c = w2c @ np.linalg.inv(w2c[0])
    w2c[0] = np.eye(4)
    return PoseEstimate(w2c, "sfm", registered, note)


def estimate_poses(
    video: torch.Tensor,
    intrinsics: np.ndarray,
    rotation_only: bool = False,
    max_features: int = 8192,
    seed: int = 0,
    work_dir: str | Path | None = None,
) -> PoseEstimate:
    """Recover the camera path of a (F, 3, H, W) video in [0, 1] with known (F, 4) normalised intrinsics.

    The intrinsics (fx fy cx cy, normalised per axis by W and H as in `fulldit.camera.path`) are fixed per frame,
    so a zoom shows up as a change of intrinsics, never of pose. `rotation_only` selects the homography estimator
    for moves without translation (see `is_rotation_only`); otherwise pycolmap's global mapper runs on SIFT
    features with exhaustive matching and the largest reconstruction is kept. That must register every frame, each
    on at least `MIN_POINTS_PER_FRAME` triangulated points: on the synthetic rooms, reconstructions that left a
    frame out or hung it on a few points were the ones with wrong rotations, and an interpolated frame hid that,
    so such clips fail rather than score a wrong path. Both estimators are single-threaded and seeded, so a given
    seed gives the same result. `work_dir` keeps the COLMAP database, images and model there (for inspection;
    earlier ones are replaced); otherwise a temporary directory is used and removed. Invalid arguments raise
    ValueError; a video from which no path can be recovered returns `method="failed"` with the reason.
    """
    frames = _frames_uint8(video)
    n, h, w = frames.shape[:3]
    k = _k_matrices(intrinsics, n, h, w)  # validates the intrinsics at the video's own size
    if min(h, w) < MIN_SIDE:  # SIFT finds too few features on tiny frames; upsampling recovers some
        scale = MIN_SIDE / min(h, w)
        h, w = round(h * scale), round(w * scale)
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in frames])
        k = _k_matrices(intrinsics, n, h, w)
    if n == 1:
        return PoseEstimate(np.eye(4)[None], "rotation" if rotation_only else "sfm", 1, "one frame")
    if rotation_only:
        return _rotation_only(frames, k, int(max_features), int(seed))
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="fulldit_sfm_")
        work = Path(tmp)
    else:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
        for old in ("images", "sparse"):
            shutil.rmtree(work / old, ignore_errors=True)
        (work / "database.db").unlink(missing_ok=True)
    import pycolmap

    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 1  # COLMAP logs every step at INFO; keep warnings and errors
    try:
        return _sfm(frames, k, int(max_features), int(seed), work)
    except (RuntimeError, ValueError) as e:  # pycolmap raises these on degenerate input ("Check failed: ...")
        text = str(e).strip().splitlines()
        return PoseEstimate(None, "failed", 0, f"sfm: {type(e).__name__}: {text[0] if text else ''}"[:300])
    finally:
        pycolmap.logging.minloglevel = level
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
