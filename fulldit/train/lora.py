"""LoRA on the backbone (peft): adapt a pretrained transformer cheaply while FullDiT's own modules train in full.

    train.lora.enabled=true   ->   blocks.<i>.self_attn.q  becomes  .base_layer (frozen) + .lora_A/.lora_B (trained)

The adapters are injected in place with `peft.inject_adapter_in_model`, so the model stays a `FullDiT` with its
own forward (no PeftModel wrapper; parameter names change only inside adapted linears). Every other backbone
parameter is frozen; the parameters named in `train.lora.trainable` (the condition tokenizers and the condition
gates, which a converted Wan2.1 checkpoint lacks) are trained in full. `merged_state` folds the adapters back into
plain linears, W + (alpha / rank) B A, so an exported checkpoint loads into a plain FullDiT and `fulldit generate`
needs no peft.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from fulldit.config import ModelConfig
from fulldit.errors import InputError
from fulldit.train.config import LoraConfig

ADAPTER = "default"  # peft's adapter name: it appears in parameter names (lora_A.default.weight)


def peft_config(cfg: LoraConfig) -> object:
    """The peft LoraConfig: a regex that matches the target linears of every block and nothing else."""
    from peft import LoraConfig as PeftLoraConfig  # deferred: peft imports transformers (slow)

    names = "|".join(re.escape(t) for t in cfg.targets)
    return PeftLoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=rf"blocks\.\d+\.(?:{names})",
        init_lora_weights=True,  # B = 0: the adapted model starts as the base model
    )


def _check_targets(model: nn.Module, cfg: LoraConfig) -> None:
    """Every target must name a linear of the first block (a typo would otherwise adapt nothing)."""
    block = model.blocks[0]
    linears = sorted(n for n, m in block.named_modules() if isinstance(m, nn.Linear))
    unknown = [t for t in cfg.targets if t not in linears]
    if unknown:
        raise InputError(f"train.lora.targets: {unknown} are not linears of a block (valid: {', '.join(linears)})")


def apply_lora(model: nn.Module, cfg: LoraConfig) -> tuple[int, int]:
    """Inject adapters into `model` in place, freeze the backbone, keep `cfg.trainable` trainable.

    Returns (trainable parameters, all parameters).
    """
    from peft import inject_adapter_in_model

    _check_targets(model, cfg)
    inject_adapter_in_model(peft_config(cfg), model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter(name) or trained_in_full(name, cfg))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def trained_in_full(name: str, cfg: LoraConfig) -> bool:
    """True when a dotted part of the parameter name is listed in `cfg.trainable` (e.g. conditions, cond_gate)."""
    dotted = f".{name}."
    return any(f".{part.strip('.')}." in dotted for part in cfg.trainable)


def is_adapter(name: str) -> bool:
    """True for the LoRA matrices of an adapted linear."""
    return ".lora_A." in name or ".lora_B." in name


@torch.no_grad()
def merged_state(model_cfg: ModelConfig, cfg: LoraConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain FullDiT weights from the weights of a model with adapters (peft's merge, on a meta-device skeleton).

    The skeleton allocates nothing: `state`'s tensors are assigned into it. peft's safe merge writes each merged
    weight to a new tensor (and refuses non-finite results), so `state` itself, which may alias the live training
    weights, is left unchanged.
    """
    from peft import LoraModel

    from fulldit.model import FullDiT

    with torch.device("meta"):
        skeleton = FullDiT(model_cfg)
    tuner = LoraModel(skeleton, peft_config(cfg), ADAPTER, low_cpu_mem_usage=True)
    tuner.model.load_state_dict(state, assign=True)
    plain = tuner.merge_and_unload(safe_merge=True)
    return {k: v for k, v in plain.state_dict().items()}
