"""Config files: YAML with dotted overrides, strict keys, types."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulldit.config import FullDiTConfig, from_dict, load_config, to_dict
from fulldit.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_configs_load() -> None:
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.model.dim % cfg.model.heads == 0


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["model.layers=3", "model.camera.mode=plucker", "sample.shift=5"])
    assert cfg.model.layers == 3 and cfg.model.camera.mode == "plucker" and cfg.sample.shift == 5.0
    assert isinstance(cfg.model.patch, tuple)
    assert from_dict(FullDiTConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.layer=3"], "unknown key"),
        (["model.dim=abc"], "expected int"),
        (["model.attention=sparse"], "attention"),
        (["model.patch=[1,2]"], "expected 3 values"),
        (["model.dim"], "key=value"),
        (["model.heads=5"], "divisible"),
        (["model.condition_layers=[0,9]"], "condition_layers"),
    ],
)
def test_bad_configs_name_the_problem(overrides: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_config(ROOT / "configs" / "tiny.yaml", overrides)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such config"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(InputError, match="bad.yaml"):
        load_config(bad)
