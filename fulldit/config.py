"""Configuration: nested frozen dataclasses, loaded from YAML or JSON with dotted overrides.

One `FullDiTConfig` describes a checkpoint completely (transformer, conditions, codec, text encoder,
flow); it is what `config.json` in a checkpoint directory holds. Unknown keys are an error, so a typo
in a YAML file never silently falls back to a default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fulldit.codecs import CodecConfig
from fulldit.errors import InputError, check
from fulldit.text_encoders import TextEncoderConfig

SEED_LIMIT = 2**63  # seeds are in [0, SEED_LIMIT): what torch and numpy generators both take


def check_probability(name: str, value: float) -> None:
    check(0 <= value <= 1, name, value, "must be a probability in [0, 1]")


@contextlib.contextmanager
def naming(source: str) -> Iterator[None]:
    """Prefix an InputError raised inside (e.g. by a config's range checks) with `source`, unless it names it."""
    try:
        yield
    except InputError as err:
        if str(err).startswith(source):
            raise
        raise InputError(f"{source}: {err}") from err


@dataclass(frozen=True)
class CameraConfig:
    """Camera condition. `tokens`: a few tokens per latent frame (FullDiT); `plucker`: dense rays on the video grid."""

    mode: str = "tokens"
    tokens_per_frame: int = 2
    frames_per_token: int = 1  # video frames behind one token frame: codec temporal stride x model patch t
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check(self.tokens_per_frame >= 1, "model.camera.tokens_per_frame", self.tokens_per_frame, "must be at least 1")
        check(self.frames_per_token >= 1, "model.camera.frames_per_token", self.frames_per_token, "must be at least 1")
        check_probability("model.camera.dropout", self.dropout)


@dataclass(frozen=True)
class ReferenceConfig:
    """Identity condition: 1..max_images reference images, patch tokens placed apart from the video in time."""

    max_images: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check(self.max_images >= 1, "model.reference.max_images", self.max_images, "must be at least 1")
        check_probability("model.reference.dropout", self.dropout)


@dataclass(frozen=True)
class DepthConfig:
    """Depth condition: a depth video encoded by the codec, patch tokens on the video's own grid."""

    dropout: float = 0.1
    # Also read the first frame reprojected through the depth and the camera (fulldit/conditions/reproject.py) where
    # a sample has all three, in the same tokens: metric depth in the camera path's units is then required
    reproject: bool = False

    def __post_init__(self) -> None:
        check_probability("model.depth.dropout", self.dropout)


@dataclass(frozen=True)
class FramesConfig:
    """Frame conditions (STIV frame replacement): training draws one mode per sample with these probabilities."""

    first: float = 0.1
    prefix: float = 0.05
    last: float = 0.05
    keyframes: float = 0.0

    def __post_init__(self) -> None:
        for name in ("first", "prefix", "last", "keyframes"):
            check_probability(f"frames.{name}", getattr(self, name))
        total = self.first + self.prefix + self.last + self.keyframes
        check(total <= 1 + 1e-9, "frames.first+prefix+last+keyframes", round(total, 6), "must be at most 1")


@dataclass(frozen=True)
class ModelConfig:
    """The transformer. Block layout and parameter names follow Wan2.1 so its weights load (issue #6)."""

    in_channels: int = 48
    patch: tuple[int, int, int] = (1, 2, 2)
    dim: int = 384
    layers: int = 8
    heads: int = 3
    ffn_dim: int = 1536
    text_dim: int = 256
    freq_dim: int = 256
    eps: float = 1e-6
    rope_theta: float = 10000.0
    attention: str = "full"  # "full" (FullDiT) | "isolated" (FullDiT2: conditions attend only to themselves)
    # True: video tokens read condition tokens through a zero-initialised gate per block and head (model.py), so a
    # converted pretrained backbone (Wan2.1) is unchanged until trained. False: one softmax over all keys (FullDiT).
    condition_gate: bool = False
    # How the gated video queries merge the condition keys' attention with the video keys' (model.py), with
    # condition_gate only: "lse" one softmax in which the condition keys weigh the gate (opens into FullDiT);
    # "separate" a second softmax over the condition keys added times the gate (adapters' decoupled attention,
    # kept to compare against, issue #15).
    gate_merge: str = "lse"
    # blocks (0-based) in which video tokens read condition tokens; condition tokens pass only through these blocks
    # (FullDiT2: conditions in a few layers cost a fraction of the attention). Empty: every block.
    condition_layers: tuple[int, ...] = ()
    conditions: tuple[str, ...] = ("camera", "reference", "depth")
    camera: CameraConfig = field(default_factory=CameraConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def reads_conditions(self, block: int) -> bool:
        """Whether block `block` reads condition tokens (every block unless condition_layers names some)."""
        return not self.condition_layers or block in self.condition_layers

    def __post_init__(self) -> None:
        for name in ("in_channels", "dim", "layers", "heads", "ffn_dim", "text_dim"):
            check(getattr(self, name) >= 1, f"model.{name}", getattr(self, name), "must be at least 1")
        check(self.freq_dim >= 2 and self.freq_dim % 2 == 0, "model.freq_dim", self.freq_dim, "must be even and >= 2")
        check(all(p >= 1 for p in self.patch), "model.patch", list(self.patch), "must be three integers >= 1")
        check(self.eps > 0, "model.eps", self.eps, "must be positive")
        check(self.rope_theta > 0, "model.rope_theta", self.rope_theta, "must be positive")
        if self.dim % self.heads:
            raise InputError(f"model.dim={self.dim} is not divisible by model.heads={self.heads}")
        if self.head_dim % 2:
            raise InputError(f"model head dim {self.head_dim} must be even for rotary positions")
        if self.attention not in ("full", "isolated"):
            raise InputError(f"model.attention must be 'full' or 'isolated', not {self.attention!r}")
        if self.gate_merge not in ("lse", "separate"):
            raise InputError(f"model.gate_merge must be 'lse' or 'separate', not {self.gate_merge!r}")
        if self.gate_merge == "separate" and not self.condition_gate:
            raise InputError("model.gate_merge='separate' needs model.condition_gate=true (it is a way to gate)")
        bad = [i for i in self.condition_layers if not 0 <= i < self.layers]
        if bad or len(set(self.condition_layers)) != len(self.condition_layers):
            raise InputError(
                f"model.condition_layers {list(self.condition_layers)}: expected distinct block indices in "
                f"[0, {self.layers})"
            )
        if self.camera.mode not in ("tokens", "plucker"):
            raise InputError(f"model.camera.mode must be 'tokens' or 'plucker', not {self.camera.mode!r}")


@dataclass(frozen=True)
class FlowConfig:
    """Rectified flow in Wan2.1's convention: x_t = (1 - t) x0 + t noise, velocity = noise - x0, t in [0, 1]."""

    prediction: str = "velocity"  # "velocity" (Wan2.1, latent codecs) | "x0" (pixel codecs, loss still on velocity)
    timestep_sampling: str = "logit_normal"  # "logit_normal" | "uniform"
    shift: float = 1.0  # training-time timestep shift
    x0_min_t: float = 0.05  # "x0" prediction: velocity = (x_t - x0) / max(t, x0_min_t)
    text_dropout: float = 0.1

    def __post_init__(self) -> None:
        check(self.shift > 0, "flow.shift", self.shift, "must be positive")
        check(0 < self.x0_min_t <= 1, "flow.x0_min_t", self.x0_min_t, "must be in (0, 1]")
        check_probability("flow.text_dropout", self.text_dropout)
        if self.prediction not in ("velocity", "x0"):
            raise InputError(f"flow.prediction must be 'velocity' or 'x0', not {self.prediction!r}")
        if self.timestep_sampling not in ("logit_normal", "uniform"):
            raise InputError(
                f"flow.timestep_sampling must be 'logit_normal' or 'uniform', not {self.timestep_sampling!r}"
            )


@dataclass(frozen=True)
class SampleConfig:
    """Defaults for generation, stored with a checkpoint so `fulldit generate` needs no flags."""

    frames: int = 16
    height: int = 128
    width: int = 128
    fps: float = 8.0
    steps: int = 25
    shift: float = 3.0
    guidance: float = 3.0  # condition scale
    text_guidance: float = 3.0
    guidance_min_t: float = 0.0  # guidance only at flow times t >= this; below, the first branch alone (0: always)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("frames", "height", "width", "steps"):
            check(getattr(self, name) >= 1, f"sample.{name}", getattr(self, name), "must be at least 1")
        check(self.fps > 0, "sample.fps", self.fps, "must be positive")
        check(self.shift > 0, "sample.shift", self.shift, "must be positive")
        check(self.guidance >= 0, "sample.guidance", self.guidance, "must be at least 0 (1 = off)")
        check(self.text_guidance >= 0, "sample.text_guidance", self.text_guidance, "must be at least 0 (1 = off)")
        check(0 <= self.guidance_min_t <= 1, "sample.guidance_min_t", self.guidance_min_t, "must be in [0, 1]")
        check(0 <= self.seed < SEED_LIMIT, "sample.seed", self.seed, "must be in [0, 2**63)")


@dataclass(frozen=True)
class FullDiTConfig:
    """Everything needed to rebuild a checkpoint: what `config.json` in a checkpoint directory holds."""

    model: ModelConfig = field(default_factory=ModelConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Turn a JSON/YAML value into the declared field type (nested dataclasses, tuples)."""
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, found {value!r}")
        args = typing.get_args(tp)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is None and len(args) != len(value):
            raise InputError(f"{where}: expected {len(args)} values, found {len(value)}")
        return tuple(_convert(item or args[i], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InputError(f"{where}: expected a finite number, found {value!r}")
        return float(value)
    if tp in (int, str, bool, float) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise InputError(f"{where}: expected {tp.__name__}, found {value!r}")
    return value


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from a nested dict; unknown keys are an error that names the key."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping, found {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
    return cls(**{k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples become lists) for JSON/YAML."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` overrides (values parsed as YAML) to a nested dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise InputError(f"override {item!r}: expected key=value")
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise InputError(f"override {item!r}: {p} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def read_yaml(path: str | Path | None, overrides: list[str] | None = None) -> dict:
    """A YAML/JSON file as a nested dict (empty when `path` is None), with dotted overrides applied."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping at the top level")
    return apply_overrides(data, overrides or [])


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, cls: type = FullDiTConfig) -> Any:
    """Load a YAML/JSON file (or defaults when `path` is None), apply dotted overrides, validate."""
    data = read_yaml(path, overrides)
    data.pop("train", None)  # a training YAML's train: section belongs to fulldit.train.config
    with naming(str(path) if path else "config"):
        return from_dict(cls, data, str(path) if path else "config")
