"""Training checkpoints: everything needed to continue exactly, written so that a crash never breaks "latest".

    OUT/checkpoints/step_00001000/
        ema/                       the EMA weights as a checkpoint directory `fulldit generate` reads (fp32)
        weights.safetensors        the trained weights (fp32), names as in the training module
        optimizer.safetensors      AdamW moments and step counts, flattened: "state.<param>.<key>"
        rng-rank<R>.safetensors    each rank's torch RNG states (CPU, and CUDA where used)
        trainer.json               step, EMA updates, optimizer param groups, data position, elapsed time
    OUT/checkpoints/latest         the name of the newest complete step directory

With LoRA (`train.lora`) only what is trained is saved: weights.safetensors holds the adapters and the fully trained
modules, and `ema/` is replaced by ema.safetensors with their averages (the frozen backbone is the `--init`
checkpoint, recorded in trainer.json; OUT/model is the merged, plain model).

A step directory is written under a temporary name and renamed when complete, then `latest` is replaced
atomically; older step directories beyond `keep` are removed after that. A kill at any moment leaves the
previous checkpoint intact. Weights, moments and RNG states are safetensors; nothing is pickled.

At the end of a run OUT/model is exported (`export_ema`, or `export_weights` for LoRA's merged model): the EMA
weights in bf16, the plain checkpoint `fulldit generate --checkpoint` reads.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from fulldit.atomic import atomic_path
from fulldit.checkpoint import load_state, save_states
from fulldit.config import FullDiTConfig
from fulldit.errors import InputError
from fulldit.train.ema import EMA

LATEST = "latest"
TRAINER = "trainer.json"
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
TRAINED = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True, strict=False)
EMA_TRAINED = "ema.safetensors"


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {}
    for param, entries in state["state"].items():
        for key, value in entries.items():
            tensors[f"state.{param}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return tensors, state["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        param, key = name[len("state.") :].rsplit(".", 1)
        state.setdefault(param, {})[key] = value
    return {"state": state, "param_groups": groups}


def split_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a training module's state under `prefix` ("model." or "text_encoder."), prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _rng_state() -> dict[str, torch.Tensor]:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def save_checkpoint(
    root: Path,
    step: int,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: EMA,
    config: FullDiTConfig,
    trainer: dict[str, Any],
    keep: int,
    trained_only: bool = False,
) -> Path:
    """Write step `step` (collective: every rank calls it). Returns the final directory.

    trained_only: save only the parameters that require gradients (LoRA: adapters + fully trained modules).
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".step_{step:08d}.partial"
    if _rank() == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    _barrier()
    save_file(_rng_state(), str(tmp / f"rng-rank{_rank()}.safetensors"))
    options = TRAINED if trained_only else FULL
    weights, optim = get_state_dict(module, optimizer, options=options)  # gathers shards under FSDP2
    ema_state = ema.full_state()
    if _rank() == 0:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
        tensors, groups = _flatten_optimizer(optim)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        if trained_only:
            save_file({k: v.contiguous() for k, v in ema_state.items()}, str(tmp / EMA_TRAINED))
        else:
            shadow = {**weights, **ema_state}  # buffers (none today) from the live weights, parameters from the EMA
            _save_ema(tmp / "ema", config, shadow)
        info = {**trainer, "step": step, "ema_updates": ema.updates, "param_groups": groups}
        (tmp / TRAINER).write_text(json.dumps(info, indent=2) + "\n")  # last file of a complete directory
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        with atomic_path(root / LATEST) as t:
            t.write_text(final.name + "\n")
        _prune(root, keep)
    _barrier()
    return final


def _save_ema(
    directory: Path, config: FullDiTConfig, state: dict[str, torch.Tensor], dtype: torch.dtype | None = None
) -> None:
    """The "model." / "text_encoder." tensors as an ordinary checkpoint directory (config.json + safetensors)."""
    text = split_state(state, "text_encoder.") or None
    save_states(directory, config, split_state(state, "model."), text, dtype=dtype)


def export_ema(checkpoint: Path | None, final: Path) -> None:
    """OUT/model: the newest EMA weights in bf16, sharded (<= 15 MB a file), ready for `fulldit generate`."""
    from fulldit.generate import Pipeline

    if checkpoint is None:
        return
    pipe = Pipeline.from_pretrained(checkpoint / "ema", device="cpu", dtype=torch.float32)
    _replace_dir(final, lambda tmp: pipe.save_pretrained(tmp, dtype=torch.bfloat16))


def export_weights(final: Path, config: FullDiTConfig, state: dict[str, torch.Tensor]) -> None:
    """OUT/model from "model." / "text_encoder." tensors (e.g. the EMA with LoRA's adapters merged in), in bf16."""
    _replace_dir(final, lambda tmp: _save_ema(tmp, config, state, torch.bfloat16))


def _replace_dir(final: Path, write: Callable[[Path], None]) -> None:
    """Write a checkpoint directory beside `final`, then swap it in: `final` is never half-written."""
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    write(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in root.glob(".step_*.partial"):
        shutil.rmtree(partial, ignore_errors=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete step directory under `root`, or None."""
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / TRAINER).is_file():
            return candidate
    complete = sorted(p for p in root.glob("step_*") if (p / TRAINER).is_file())
    return complete[-1] if complete else None


def load_checkpoint(
    directory: Path, module: nn.Module, optimizer: torch.optim.Optimizer, ema: EMA, trained_only: bool = False
) -> dict[str, Any]:
    """Restore weights, optimizer, EMA and this rank's RNG states; returns trainer.json's contents.

    trained_only: the checkpoint holds only the trained parameters (see `save_checkpoint`); the rest of `module`
    (the frozen backbone) is left as it is.
    """
    try:
        info = json.loads((directory / TRAINER).read_text())
        weights = load_file(str(directory / "weights.safetensors"))
        optim = _unflatten_optimizer(load_file(str(directory / "optimizer.safetensors")), info["param_groups"])
        if trained_only:
            shadow = load_file(str(directory / EMA_TRAINED))
        else:
            ema_dir = directory / "ema"
            shadow = {f"model.{k}": v for k, v in load_state(ema_dir).items()}
            text_file = ema_dir / "text_encoder.safetensors"
            if text_file.is_file():
                shadow.update({f"text_encoder.{k}": v for k, v in load_file(str(text_file)).items()})
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise InputError(f"{directory}: not a complete training checkpoint ({err})") from err
    if trained_only and set(weights) != set(ema.names):
        missing, extra = sorted(set(ema.names) - set(weights)), sorted(set(weights) - set(ema.names))
        raise InputError(
            f"{directory}: holds other trained tensors than this run trains (missing {missing[:3]}, "
            f"unexpected {extra[:3]}, {len(missing) + len(extra)} in all); was train.lora changed?"
        )
    options = TRAINED if trained_only else FULL
    set_state_dict(module, optimizer, model_state_dict=weights, optim_state_dict=optim, options=options)
    ema.load_full_state(shadow, info["ema_updates"])
    rng_file = directory / f"rng-rank{_rank()}.safetensors"
    if rng_file.is_file():
        rng = load_file(str(rng_file))
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return info
