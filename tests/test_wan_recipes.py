"""The Wan2.1 fine-tuning recipes (configs/wan2.1-*-fulldit.yaml) parse, describe Wan2.1 exactly, and train."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from fulldit.model import FullDiT
from fulldit.train.config import load_train_config
from fulldit.train.curriculum import check_curriculum
from fulldit.train.lora import apply_lora

# (dim, ffn, heads, layers) of Wan2.1 T2V
WAN = {"1.3b": (1536, 8960, 12, 30), "14b": (5120, 13824, 40, 40)}


def wan_backbone_params(dim: int, ffn: int, layers: int, channels: int = 16, text: int = 4096, freq: int = 256) -> int:
    """Parameters of Wan2.1's transformer, counted from its published layout (independent of fulldit.model)."""
    attn = 4 * (dim * dim + dim) + 2 * dim  # q, k, v, o + RMS qk-norm
    block = 2 * attn + 2 * dim + (dim * ffn + ffn + ffn * dim + dim) + 6 * dim  # self, cross, norm3, FFN, modulation
    patch = channels * 4  # patch (1, 2, 2)
    embed = (patch * dim + dim) + (text * dim + dim + dim * dim + dim) + (freq * dim + dim + dim * dim + dim)
    head = (dim * 6 * dim + 6 * dim) + (dim * patch + patch + 2 * dim)  # time projection, head + its modulation
    return layers * block + embed + head


@pytest.mark.parametrize("size", sorted(WAN))
def test_recipe_is_wan21_with_fulldit_conditions(size: str) -> None:
    cfg, train = load_train_config(f"configs/wan2.1-{size}-fulldit.yaml")
    dim, ffn, heads, layers = WAN[size]
    m = cfg.model
    assert (m.dim, m.ffn_dim, m.heads, m.layers) == (dim, ffn, heads, layers) and m.head_dim == 128
    assert (m.in_channels, m.patch, m.text_dim, m.freq_dim, m.eps) == (16, (1, 2, 2), 4096, 256, 1e-6)
    assert m.conditions == ("camera", "reference", "depth") and m.condition_gate
    assert (cfg.codec.kind, cfg.text.kind, cfg.text.max_length, cfg.text.pad_to_max_length) == (
        "wan-vae",
        "t5",
        512,
        True,
    )
    assert cfg.flow.prediction == "velocity"
    assert (train.parallel, train.precision) == ("fsdp", "bf16")
    assert train.activation_checkpointing == ("selective" if size == "1.3b" else True)
    assert train.lr <= 2e-5 and train.warmup > 0 and 0.99 < train.ema < 1 and not train.lora.enabled
    assert train.data.source == "folder"
    # FullDiT's curriculum: camera, then + identity, then + depth
    check_curriculum(train.curriculum, m.conditions)
    assert [s.conditions for s in train.curriculum.stages] == [
        ("camera",),
        ("camera", "reference"),
        ("camera", "reference", "depth"),
    ]
    # Wan VAE strides (4, 8, 8) x patch (1, 2, 2): 81 frames of 480x832 -> 21 x 30 x 52 = 32,760 video tokens
    for frames, height, width in [(train.data.frames, train.data.height, train.data.width),
                                  (cfg.sample.frames, cfg.sample.height, cfg.sample.width)]:  # fmt: skip
        assert (frames - 1) % 4 == 0 and height % 16 == 0 and width % 16 == 0
    assert m.camera.frames_per_token == 4
    # the backbone is Wan2.1's, tensor for tensor; FullDiT adds the condition modules and gates
    with torch.device("meta"):
        model = FullDiT(m)
    new = sum(p.numel() for n, p in model.named_parameters() if n.startswith("conditions.") or "cond_gate" in n)
    assert model.num_params() - new == wan_backbone_params(dim, ffn, layers)
    assert 0 < new < 0.01 * model.num_params()


def test_recipe_switches_to_lora_on_a_tiny_override() -> None:
    small = ["model.dim=64", "model.ffn_dim=128", "model.heads=2", "model.layers=2", "model.text_dim=32"]
    cfg, train = load_train_config("configs/wan2.1-1.3b-fulldit.yaml", [*small, "train.lora.enabled=true"])
    assert train.lora.enabled and train.lora.rank == 64
    torch.manual_seed(0)
    model = FullDiT(cfg.model)
    trained, total = apply_lora(model, train.lora)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("conditions.") or n.endswith("cond_gate") for n in names)
    assert {f"blocks.{i}.cond_gate" for i in range(2)} <= set(names)
    x = torch.randn(1, 16, 3, 4, 4)
    out = model(x, torch.tensor([0.5]), torch.randn(1, 7, 32))
    assert out.shape == x.shape and 0 < trained < total


def test_empty_codec_and_text_paths_come_from_the_init_checkpoint(tmp_path: Path) -> None:
    import json
    from dataclasses import replace

    from fulldit.config import to_dict
    from fulldit.train.loop import _inherit_paths

    cfg, _ = load_train_config("configs/wan2.1-1.3b-fulldit.yaml")
    assert cfg.codec.path == "" and cfg.text.path == ""
    converted = replace(
        cfg, codec=replace(cfg.codec, path="/models/wan/vae"), text=replace(cfg.text, path="/models/wan")
    )
    (tmp_path / "config.json").write_text(json.dumps(to_dict(converted)))
    got = _inherit_paths(cfg, str(tmp_path))
    assert (got.codec.path, got.text.path) == ("/models/wan/vae", "/models/wan") and got.model == cfg.model
    mine = replace(cfg, codec=replace(cfg.codec, path="/elsewhere/vae"))
    assert _inherit_paths(mine, str(tmp_path)).codec.path == "/elsewhere/vae"  # a path set in the YAML wins


@pytest.mark.parametrize("size", sorted(WAN))
def test_recipe_model_is_what_the_converter_writes(size: str) -> None:
    """`--init CONVERTED` loads tensor for tensor only when the recipe's model is the converted checkpoint's."""
    from fulldit.convert import wan_config
    from fulldit.convert.wan import WanArchitecture

    cfg, _ = load_train_config(f"configs/wan2.1-{size}-fulldit.yaml")
    m = cfg.model
    arch = WanArchitecture(m.in_channels, m.patch, m.dim, m.layers, m.heads, m.ffn_dim, m.text_dim, m.freq_dim, m.eps,
                           text_len=512)  # fmt: skip
    converted = wan_config(arch, "/vae", "/umt5", m.conditions)
    with torch.device("meta"):
        ours, theirs = FullDiT(m).state_dict(), FullDiT(converted.model).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert (m.attention, m.condition_gate, m.camera.frames_per_token) == (
        converted.model.attention,
        converted.model.condition_gate,
        converted.model.camera.frames_per_token,
    )
    for section in ("codec", "text"):
        ours_, theirs_ = getattr(cfg, section), getattr(converted, section)
        assert dataclasses.replace(ours_, path="", dtype="float32") == dataclasses.replace(
            theirs_, path="", dtype="float32"
        ), section
    assert cfg.flow.prediction == converted.flow.prediction
