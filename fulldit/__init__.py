"""fulldit: FullDiT, one video diffusion transformer for any mix of conditions, learned with full self-attention."""

from fulldit.camera import CameraPath, build_path, load_camera
from fulldit.config import FullDiTConfig, load_config
from fulldit.errors import InputError
from fulldit.generate import Pipeline, Request
from fulldit.model import FullDiT
from fulldit.video_io import read_depth, read_image, read_video, write_video

__all__ = [
    "CameraPath",
    "FullDiT",
    "FullDiTConfig",
    "InputError",
    "Pipeline",
    "Request",
    "build_path",
    "load_camera",
    "load_config",
    "read_depth",
    "read_image",
    "read_video",
    "write_video",
]
__version__ = "0.1.0"
