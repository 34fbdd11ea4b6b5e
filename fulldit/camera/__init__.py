"""Cameras: the pose convention, pose files, named moves, other tools' conventions, and plots of a path.

path.py         CameraPath (OpenCV world-to-camera, normalised intrinsics), what the model sees of it
files.py        RealEstate10K / CameraCtrl .txt and the JSON form: load_camera, save_camera_re10k, ...
moves.py        the named moves ("orbit-left 30deg then dolly-in 0.5") -> CameraPath: the one vocabulary of
                moves (the CLI, the demo, the tests and the synthetic world use its names)
conventions.py  opencv / c2w / opengl matrices in pose files
plot.py         frusta from above and from the side (matplotlib), and the preview's small top view;
                imported on its own (`fulldit.camera.plot`), so that reading a pose file loads no matplotlib
"""

from fulldit.camera.conventions import CONVENTIONS, load_camera_as, save_camera_as
from fulldit.camera.files import load_camera, parse_camera_json, parse_re10k, save_camera_json, save_camera_re10k
from fulldit.camera.moves import MOVE_NAMES, CameraMove, build_path, describe, make_move, parse_moves
from fulldit.camera.path import CameraPath, camera_features, fov_intrinsics, plucker_rays, validate

__all__ = [
    "CONVENTIONS",
    "MOVE_NAMES",
    "CameraMove",
    "CameraPath",
    "build_path",
    "camera_features",
    "describe",
    "fov_intrinsics",
    "load_camera",
    "load_camera_as",
    "make_move",
    "parse_camera_json",
    "parse_moves",
    "parse_re10k",
    "plucker_rays",
    "save_camera_as",
    "save_camera_json",
    "save_camera_re10k",
    "validate",
]
