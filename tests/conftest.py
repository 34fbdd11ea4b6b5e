"""Shared tiny configurations: a FullDiT of a few thousand parameters that runs in milliseconds on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from fulldit.codecs import CodecConfig
from fulldit.config import CameraConfig, FlowConfig, FullDiTConfig, ModelConfig, SampleConfig
from fulldit.text_encoders import TextEncoderConfig


def bench_script(name: str) -> ModuleType:
    """bench/NAME.py loaded as a module (bench/ is scripts, not a package), to test its functions and main."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_model_config(**kw) -> ModelConfig:
    base = dict(
        in_channels=12,
        patch=(1, 2, 2),
        dim=32,
        layers=2,
        heads=2,
        ffn_dim=64,
        text_dim=16,
        camera=CameraConfig(frames_per_token=1),
    )
    base.update(kw)
    return ModelConfig(**base)


def tiny_config(**model_kw) -> FullDiTConfig:
    """Pixel codec (1, 2, 2): 8x16x16 videos -> 12 x 8 x 8 x 8 latents -> 4 x 4 x 8 = 128 video tokens."""
    return FullDiTConfig(
        model=tiny_model_config(**model_kw),
        codec=CodecConfig(kind="pixel", stride=(1, 2, 2)),
        text=TextEncoderConfig(kind="byte", dim=16, layers=1, heads=2, max_length=32),
        flow=FlowConfig(prediction="velocity"),
        sample=SampleConfig(frames=4, height=16, width=16, fps=4, steps=3, shift=1.0, guidance=2.0, text_guidance=2.0),
    )


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Replace the adaLN-Zero init (output exactly zero) with random weights, so conditions visibly matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


@pytest.fixture
def tiny_cfg() -> FullDiTConfig:
    return tiny_config()
