"""Checkpoint directories: safetensors round trip (single file and shards), clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fulldit.checkpoint import read_config
from fulldit.errors import InputError
from fulldit.generate import Pipeline
from tests.conftest import randomize, tiny_config


@pytest.mark.parametrize("max_shard_bytes", [2**30, 20_000])
def test_save_load_round_trip(tmp_path: Path, max_shard_bytes: int) -> None:
    cfg = tiny_config()
    pipe = Pipeline.from_config(cfg)
    randomize(pipe.model, seed=3)
    pipe.save_pretrained(tmp_path, max_shard_bytes=max_shard_bytes)
    shards = sorted(tmp_path.glob("model*.safetensors"))
    assert (len(shards) > 1) == (max_shard_bytes < 2**30)
    for shard in shards:  # each shard within the limit, unless it holds a single larger tensor
        tensors = load_file(str(shard))
        assert len(tensors) == 1 or sum(v.numel() * v.element_size() for v in tensors.values()) <= max_shard_bytes
    assert not list(tmp_path.glob("*.pickle")) and not list(tmp_path.glob("*.bin"))
    loaded = Pipeline.from_pretrained(tmp_path, device="cpu")
    assert loaded.config == cfg
    for (k, a), (k2, b) in zip(pipe.model.state_dict().items(), loaded.model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    for a, b in zip(pipe.text_encoder.state_dict().values(), loaded.text_encoder.state_dict().values()):
        assert torch.equal(a, b)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such checkpoint"):
        read_config(tmp_path / "missing")
    with pytest.raises(InputError, match="not a fulldit checkpoint"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_config(tmp_path)


def test_mismatched_weights_name_the_tensor(tmp_path: Path) -> None:
    Pipeline.from_config(tiny_config()).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["model"]["ffn_dim"] = 48
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"tensor blocks\.0\.ffn\.0\.\w+ has shape \(64.*the config expects \(48"):
        Pipeline.from_pretrained(tmp_path, device="cpu")


def test_corrupt_weights(tmp_path: Path) -> None:
    Pipeline.from_config(tiny_config()).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="cannot read the weights"):
        Pipeline.from_pretrained(tmp_path, device="cpu")


def test_shipped_default_model_is_synth_s16_and_fits_the_repository() -> None:
    """The default checkpoint is the trained synth-s16: its config is configs/synth-s16.yaml, its files stay small
    (issue #14: at most 120 MB, no file over 15 MB)."""
    from fulldit.config import load_config, to_dict

    root = Path(__file__).resolve().parents[1]
    shipped = root / "checkpoints" / "default"
    assert to_dict(read_config(shipped)) == to_dict(load_config(root / "configs" / "synth-s16.yaml"))
    files = [f for f in shipped.iterdir() if f.suffix == ".safetensors"]
    assert all(f.stat().st_size <= 15 * 10**6 for f in files)
    assert sum(f.stat().st_size for f in shipped.iterdir()) <= 120 * 10**6
    assert "## Evaluation" in (shipped / "README.md").read_text()
