"""Wan2.1 text-to-video transformers on disk: the layouts, their configs, and each tensor's name in FullDiT.

FullDiT's blocks follow Wan2.1's original release tensor for tensor (model.py), so the original layout maps by
identity (after dropping the `model.diffusion_model.` prefix of single-file exports). diffusers'
`WanTransformer3DModel` renames most tensors and swaps two norms: its `norm2` is the cross-attention norm, which
Wan2.1 (and FullDiT) call `norm3`; diffusers' `norm3` (the FFN norm) and `norm1` have no weights.

Layouts (`find_wan_source`):

    original   DIR/config.json {"dim", "num_heads", "num_layers", ...} + DIR/diffusion_pytorch_model*.safetensors
    diffusers  DIR/config.json {"_class_name": "WanTransformer3DModel", ...} + the same weight files
    pipeline   DIR/model_index.json + DIR/transformer/ (a diffusers directory) + vae/, text_encoder/, tokenizer/

Weights are one `diffusion_pytorch_model.safetensors` or shards listed by
`diffusion_pytorch_model.safetensors.index.json`.

References: Wan2.1 (Wan team, 2025), `wan/modules/model.py`; diffusers `transformer_wan.py`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulldit.errors import InputError

WEIGHTS = "diffusion_pytorch_model.safetensors"
INDEX = "diffusion_pytorch_model.safetensors.index.json"
PREFIX = "model.diffusion_model."  # single-file exports (ComfyUI) put the original names under this prefix

# Defaults of Wan2.1's `WanModel` for keys its config.json may leave out (its released configs omit several).
ORIGINAL_DEFAULTS: dict[str, Any] = {
    "model_type": "t2v",
    "patch_size": [1, 2, 2],
    "text_len": 512,
    "in_dim": 16,
    "freq_dim": 256,
    "text_dim": 4096,
    "out_dim": 16,
    "window_size": [-1, -1],
    "qk_norm": True,
    "cross_attn_norm": True,
    "eps": 1e-6,
}

# diffusers name -> FullDiT name (full match; \\1... are groups). Checked against diffusers 0.42's transformer_wan.py.
DIFFUSERS_NAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(a), b)
    for a, b in [
        (r"patch_embedding\.(weight|bias)", r"patch_embedding.\1"),
        (r"condition_embedder\.time_embedder\.linear_1\.(weight|bias)", r"time_embedding.0.\1"),
        (r"condition_embedder\.time_embedder\.linear_2\.(weight|bias)", r"time_embedding.2.\1"),
        (r"condition_embedder\.time_proj\.(weight|bias)", r"time_projection.1.\1"),
        (r"condition_embedder\.text_embedder\.linear_1\.(weight|bias)", r"text_embedding.0.\1"),
        (r"condition_embedder\.text_embedder\.linear_2\.(weight|bias)", r"text_embedding.2.\1"),
        (r"blocks\.(\d+)\.attn1\.to_(q|k|v)\.(weight|bias)", r"blocks.\1.self_attn.\2.\3"),
        (r"blocks\.(\d+)\.attn1\.to_out\.0\.(weight|bias)", r"blocks.\1.self_attn.o.\2"),
        (r"blocks\.(\d+)\.attn1\.norm_(q|k)\.weight", r"blocks.\1.self_attn.norm_\2.weight"),
        (r"blocks\.(\d+)\.attn2\.to_(q|k|v)\.(weight|bias)", r"blocks.\1.cross_attn.\2.\3"),
        (r"blocks\.(\d+)\.attn2\.to_out\.0\.(weight|bias)", r"blocks.\1.cross_attn.o.\2"),
        (r"blocks\.(\d+)\.attn2\.norm_(q|k)\.weight", r"blocks.\1.cross_attn.norm_\2.weight"),
        (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"blocks.\1.norm3.\2"),  # the cross-attention norm
        (r"blocks\.(\d+)\.ffn\.net\.0\.proj\.(weight|bias)", r"blocks.\1.ffn.0.\2"),
        (r"blocks\.(\d+)\.ffn\.net\.2\.(weight|bias)", r"blocks.\1.ffn.2.\2"),
        (r"blocks\.(\d+)\.scale_shift_table", r"blocks.\1.modulation"),
        (r"scale_shift_table", "head.modulation"),
        (r"proj_out\.(weight|bias)", r"head.head.\1"),
    ]
]


@dataclass(frozen=True)
class WanArchitecture:
    """The shape of a Wan2.1 text-to-video transformer, in FullDiT's terms."""

    in_channels: int
    patch: tuple[int, int, int]
    dim: int
    layers: int
    heads: int
    ffn_dim: int
    text_dim: int
    freq_dim: int
    eps: float
    text_len: int


@dataclass(frozen=True)
class WanSource:
    """A Wan2.1 transformer found on disk: where its files are and what it is."""

    root: Path  # the directory the user named
    transformer: Path  # the directory with config.json and the weights
    layout: str  # "original" | "diffusers"
    pipeline: bool  # root is a diffusers pipeline (vae/, text_encoder/, tokenizer/ next to transformer/)
    files: tuple[Path, ...]  # safetensors files holding the weights
    arch: WanArchitecture


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable JSON ({err})") from err
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def weight_files(directory: Path, index: str = INDEX, single: str = WEIGHTS, what: str = "Wan2.1") -> tuple[Path, ...]:
    """The safetensors files of a directory: the shards its index lists, or the single file (Wan2.1's names by
    default; a fulldit checkpoint's with fulldit.checkpoint's)."""
    if (directory / index).is_file():
        weight_map = read_json(directory / index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InputError(f"{directory / index}: no weight_map")
        files = tuple(directory / name for name in sorted(set(weight_map.values())))
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise InputError(f"{directory}: shards listed in {index} are missing: {', '.join(missing[:5])}")
        return files
    if (directory / single).is_file():
        return (directory / single,)
    raise InputError(f"{directory}: no {what} weights (looked for {single} and {index})")


def find_wan_source(src: str | Path) -> WanSource:
    """Recognise a Wan2.1 directory (original, diffusers transformer or diffusers pipeline); InputError otherwise."""
    root = Path(src)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory")
    pipeline = (root / "model_index.json").is_file()
    transformer = root / "transformer" if pipeline else root
    if pipeline:
        index = read_json(root / "model_index.json")
        if index.get("transformer_2") not in (None, [None, None]):
            raise InputError(f"{root}: a two-expert (Wan2.2 A14B) pipeline; only Wan2.1 single transformers convert")
    if not (transformer / "config.json").is_file():
        raise InputError(
            f"{root}: not a Wan2.1 directory (looked for config.json with diffusion_pytorch_model*.safetensors, "
            "or a diffusers pipeline with model_index.json and transformer/config.json)"
        )
    config = read_json(transformer / "config.json")
    if config.get("_class_name") == "WanTransformer3DModel" or "num_attention_heads" in config:
        layout, arch = "diffusers", diffusers_architecture(config, transformer / "config.json")
    elif "dim" in config and "num_heads" in config:
        layout, arch = "original", original_architecture(config, transformer / "config.json")
    else:
        raise InputError(
            f"{transformer / 'config.json'}: neither a diffusers WanTransformer3DModel config (num_attention_heads, "
            f"attention_head_dim, ...) nor an original Wan2.1 config (dim, num_heads, num_layers, ...); "
            f"found keys {sorted(config)[:8]}"
        )
    return WanSource(root, transformer, layout, pipeline, weight_files(transformer), arch)


def _need(config: dict, key: str, where: Path) -> Any:
    if key not in config:
        raise InputError(f"{where}: missing key {key!r}")
    return config[key]


def original_architecture(config: dict, where: Path) -> WanArchitecture:
    """Wan2.1's own config.json (WanModel's arguments), with WanModel's defaults for keys it omits."""
    c = {**ORIGINAL_DEFAULTS, **config}
    if c["model_type"] != "t2v":
        raise InputError(f"{where}: model_type {c['model_type']!r}; only text-to-video (t2v) Wan2.1 converts")
    if list(c["window_size"]) != [-1, -1] or not c["qk_norm"] or not c["cross_attn_norm"]:
        raise InputError(f"{where}: needs window_size [-1, -1], qk_norm and cross_attn_norm true (Wan2.1 T2V)")
    if c["out_dim"] != c["in_dim"]:
        raise InputError(f"{where}: in_dim {c['in_dim']} != out_dim {c['out_dim']} (FullDiT predicts its input)")
    return WanArchitecture(
        in_channels=int(c["in_dim"]),
        patch=_patch(c["patch_size"], where),
        dim=int(_need(config, "dim", where)),
        layers=int(_need(config, "num_layers", where)),
        heads=int(_need(config, "num_heads", where)),
        ffn_dim=int(_need(config, "ffn_dim", where)),
        text_dim=int(c["text_dim"]),
        freq_dim=int(c["freq_dim"]),
        eps=float(c["eps"]),
        text_len=int(c["text_len"]),
    )


def diffusers_architecture(config: dict, where: Path) -> WanArchitecture:
    """A diffusers WanTransformer3DModel config.json."""
    for key in ("image_dim", "added_kv_proj_dim", "pos_embed_seq_len"):
        if config.get(key) is not None:
            raise InputError(f"{where}: {key} is set (an image-to-video model); only text-to-video Wan2.1 converts")
    if not config.get("cross_attn_norm", True):
        raise InputError(f"{where}: cross_attn_norm is false; Wan2.1 T2V and FullDiT normalise before cross-attention")
    heads, head_dim = int(_need(config, "num_attention_heads", where)), int(_need(config, "attention_head_dim", where))
    in_channels = int(config.get("in_channels", 16))
    out_channels = config.get("out_channels") or in_channels
    if out_channels != in_channels:
        raise InputError(f"{where}: in_channels {in_channels} != out_channels {out_channels} (FullDiT predicts input)")
    return WanArchitecture(
        in_channels=in_channels,
        patch=_patch(config.get("patch_size", [1, 2, 2]), where),
        dim=heads * head_dim,
        layers=int(_need(config, "num_layers", where)),
        heads=heads,
        ffn_dim=int(_need(config, "ffn_dim", where)),
        text_dim=int(config.get("text_dim", 4096)),
        freq_dim=int(config.get("freq_dim", 256)),
        eps=float(config.get("eps", 1e-6)),
        text_len=512,  # diffusers' Wan pipelines pad the prompt to 512 tokens
    )


def _patch(value: Any, where: Path) -> tuple[int, int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise InputError(f"{where}: patch_size must be three numbers (t, h, w), found {value!r}")
    return int(value[0]), int(value[1]), int(value[2])


def fulldit_name(name: str, layout: str) -> str | None:
    """The FullDiT tensor a Wan2.1 tensor becomes; None when it has no counterpart (reported as unexpected)."""
    if layout == "original":
        return name.removeprefix(PREFIX)
    for pattern, target in DIFFUSERS_NAMES:
        if pattern.fullmatch(name):
            return pattern.sub(target, name)
    return None
