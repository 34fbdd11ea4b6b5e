"""The evaluators' own small networks (depth net, attribute classifier) as single safetensors files.

One file holds the weights, the architecture (`config`, the constructor's keyword arguments) and provenance
(`info`: how and on what it was trained, its held-out scores), so a weights file explains itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from fulldit.atomic import atomic_path
from fulldit.errors import InputError


def save_net(path: str | Path, net: nn.Module, model: str, config: dict, info: dict | None, dtype: torch.dtype) -> None:
    """Write `net`'s weights (cast to `dtype`), its name, config and info as one safetensors file, atomically."""
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    meta = {"format": "pt", "model": model, "config": json.dumps(config)}
    if info:
        meta["info"] = json.dumps(info)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def read_net(path: str | Path, model: str, missing_hint: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, config) of a file `save_net` wrote for `model`; InputError for a missing, bad or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {model} weights file{missing_hint}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
        config = json.loads(meta.get("config", "{}"))
    except (OSError, SafetensorError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read {model} weights ({type(err).__name__}: {err})") from err
    if meta.get("model") != model:
        raise InputError(f"{path}: not a {model} weights file (metadata model={meta.get('model')!r})")
    return state, config


def load_matching(net: nn.Module, state: dict[str, torch.Tensor], path: str | Path, described: str) -> None:
    """Load `state` into `net` (as float32) if every name and shape matches, else an InputError naming the file."""
    own = net.state_dict()
    if set(own) != set(state) or any(own[k].shape != state[k].shape for k in own):
        raise InputError(f"{path}: the weights do not match {described}")
    net.load_state_dict({k: v.float() for k, v in state.items()})
