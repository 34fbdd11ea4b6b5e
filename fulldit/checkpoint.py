"""Checkpoint directories: `config.json` + safetensors weights, never pickle.

Layout (the Hugging Face convention, so tools that read sharded safetensors read ours):

    DIR/config.json                      FullDiTConfig as JSON
    DIR/model.safetensors                the transformer and its condition modules, or, when larger
    DIR/model-00001-of-0000N.safetensors than `max_shard_bytes`, shards and
    DIR/model.safetensors.index.json     {"weight_map": {tensor name: shard file}}
    DIR/text_encoder.safetensors         a trainable text encoder's weights (byte encoder), if any

Files are written atomically, so an interrupted save never leaves a readable-but-broken checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from fulldit.atomic import atomic_path
from fulldit.config import FullDiTConfig, from_dict, naming, to_dict
from fulldit.errors import InputError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
TEXT_WEIGHTS = "text_encoder.safetensors"
MAX_SHARD_BYTES = 14 * 10**6  # tensor bytes a shard; with its header every file stays under 15 MB (10^6 bytes)


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


def _cast(state: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies; floating tensors cast to `dtype` when given (e.g. bf16 for shipping)."""
    return {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in state.items()
    }


def shard_groups(sizes: list[tuple[str, int]], max_shard_bytes: int) -> list[list[str]]:
    """Tensor names of each shard, in order: a shard closes when the next tensor would pass `max_shard_bytes`."""
    groups: list[list[str]] = [[]]
    size = 0
    for name, nbytes in sizes:
        if groups[-1] and size + nbytes > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    return groups


def write_shards(
    directory: Path,
    sizes: list[tuple[str, int]],
    tensor: Callable[[str], torch.Tensor],
    max_shard_bytes: int,
) -> list[str]:
    """Write tensors (name, bytes) as one safetensors file or as shards plus an index, fetching one shard at a time.

    `tensor(name)` returns a CPU, contiguous tensor. Only one shard's tensors are held at once, so a converter can
    stream a model far larger than memory from its source files.
    """
    groups = shard_groups(sizes, max_shard_bytes)
    for stale in list(directory.glob("model*.safetensors")) + list(directory.glob(INDEX)):
        stale.unlink()
    if len(groups) == 1:
        _save_tensors({k: tensor(k) for k in groups[0]}, directory / WEIGHTS)
        return [WEIGHTS]
    names = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    for name, group in zip(names, groups):
        _save_tensors({k: tensor(k) for k in group}, directory / name)
    weight_map = {k: name for name, group in zip(names, groups) for k in group}
    total = sum(nbytes for _, nbytes in sizes)
    _write_json(directory / INDEX, {"metadata": {"total_size": total}, "weight_map": weight_map})
    return names


def save_state(state: dict[str, torch.Tensor], directory: Path, max_shard_bytes: int) -> list[str]:
    """Save a state dict as one safetensors file or as shards of at most `max_shard_bytes` plus an index."""
    sizes = [(k, v.numel() * v.element_size()) for k, v in state.items()]
    return write_shards(directory, sizes, state.__getitem__, max_shard_bytes)


def _weight_map(path: Path) -> dict[str, str]:
    """The index's {tensor name: shard file}; InputError unless every shard is a plain file name in the directory."""
    index = json.loads(path.read_text())
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InputError(f'{path}: expected {{"weight_map": {{tensor name: shard file, ...}}}}')
    for name, shard in weight_map.items():
        if not (isinstance(shard, str) and shard == Path(shard).name and shard.endswith(".safetensors")):
            raise InputError(f"{path}: tensor {name} is in {shard!r}, not a .safetensors file of this directory")
    return weight_map


def load_state(directory: Path) -> dict[str, torch.Tensor]:
    """Read model.safetensors or its shards (via the index, whose listing every shard must match exactly)."""
    try:
        if (directory / INDEX).is_file():
            weight_map = _weight_map(directory / INDEX)
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                tensors = load_file(str(directory / shard))
                listed = {k for k, v in weight_map.items() if v == shard}
                if set(tensors) != listed:
                    odd = sorted(set(tensors) ^ listed)
                    raise InputError(f"{directory / shard}: holds other tensors than {INDEX} lists (e.g. {odd[0]})")
                state.update(tensors)
            return state
        return load_file(str(directory / WEIGHTS))
    except (OSError, SafetensorError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{directory}: cannot read the weights ({type(err).__name__}: {err})") from err


def save_pretrained(
    directory: str | Path,
    config: FullDiTConfig,
    model: nn.Module,
    text_encoder: nn.Module | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    dtype: torch.dtype | None = None,
) -> None:
    """Write a checkpoint directory: config.json, model weights (sharded when large), text-encoder weights.

    dtype: store floating weights in this type (bf16 halves the size; loading casts back to the model's type).
    """
    text_state = text_encoder.state_dict() if isinstance(text_encoder, nn.Module) else None
    save_states(directory, config, model.state_dict(), text_state, max_shard_bytes, dtype)


def save_states(
    directory: str | Path,
    config: FullDiTConfig,
    model_state: dict[str, torch.Tensor],
    text_state: dict[str, torch.Tensor] | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    dtype: torch.dtype | None = None,
) -> None:
    """`save_pretrained` from state dicts (e.g. EMA weights), without building the modules."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_state(_cast(model_state, dtype), directory, max_shard_bytes)
    if text_state:
        _save_tensors(_cast(text_state, dtype), directory / TEXT_WEIGHTS)
    write_config(directory, config)  # last: a directory with a config is complete


def write_config(directory: str | Path, config: FullDiTConfig) -> None:
    """Write config.json; writers call it last, since a directory with a config is a complete checkpoint."""
    _write_json(Path(directory) / CONFIG, to_dict(config))


def read_config(directory: str | Path) -> FullDiTConfig:
    """The config of a checkpoint directory; InputError when it is not one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: no such checkpoint directory")
    if not (directory / CONFIG).is_file():
        raise InputError(f"{directory}: not a fulldit checkpoint (no {CONFIG})")
    try:
        data = json.loads((directory / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{directory / CONFIG}: not valid JSON ({err})") from err
    with naming(str(directory / CONFIG)):
        return from_dict(FullDiTConfig, data, str(directory / CONFIG))


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], source: str, assign: bool = False) -> None:
    """Load a state dict strictly; a missing, extra or mis-shaped tensor is an InputError naming it.

    assign: make `state`'s tensors the parameters (no copy: for a module built on the meta device).
    """
    check_state(module.state_dict(), state, source)
    module.load_state_dict(state, assign=assign)


def check_state(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str) -> None:
    """InputError unless `state` has exactly the tensors of `own`, each of the same shape (`own` may be on meta)."""
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise InputError(f"{source}: weights do not match the config (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, tensor in state.items():
        if tensor.shape != own[name].shape:
            raise InputError(
                f"{source}: tensor {name} has shape {tuple(tensor.shape)}, the config expects {tuple(own[name].shape)}"
            )


def load_text_weights(module: nn.Module, directory: Path) -> None:
    path = directory / TEXT_WEIGHTS
    if not path.is_file():
        raise InputError(f"{directory}: the config has a trainable text encoder but {TEXT_WEIGHTS} is missing")
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise InputError(f"{path}: cannot read ({err})") from err
    load_weights(module, state, str(path))
