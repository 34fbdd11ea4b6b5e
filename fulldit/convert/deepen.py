"""`fulldit convert --from deepen`: a trained checkpoint grown to more blocks, computing exactly what it computed.

Growing a trained model keeps the minutes already spent on it (progressive depth growth; SOLAR's depth up-scaling,
LiGO): each old block is followed by copies of itself whose output projections (self-attention `o`, text
cross-attention `o`, the FFN's second linear) are zero. A block adds gate x projection to its residual stream, so
such a copy is the identity for video and condition tokens alike, while its inner weights start from a trained
block's rather than from noise. The first optimizer step moves the zero projections, after which every weight of
the copy trains. Per-block modulation, norms and condition gates are copied too.

With L old and N new blocks, new block j continues old block floor(j L / N); its first occurrence is the old block
itself. A trainable byte-level text encoder grows the same way (`--text-layers`): its copied layers' attention and
MLP output projections are zero, so the prompt features, and so the video, are unchanged. It also reads longer
prompts (`--text-max-length`): its learned position table gains rows, drawn as the encoder initialises its own
(normal, std 0.02); prompts that fitted before encode exactly as before, longer ones are no longer cut at the old
length (the synthetic world's captions run to 225 bytes; `max_length: 160` cut 38% of them, dropping the camera move
from a quarter). And its depth condition can learn to read the first frame reprojected through the depth and the
camera (`--depth-reproject`, fulldit/conditions/reproject.py): a second patch embedding, zero, so nothing changes
until it trains.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import load_file

from fulldit.checkpoint import TEXT_WEIGHTS, load_state, read_config, save_states
from fulldit.config import FullDiTConfig
from fulldit.errors import InputError

# The tensors through which a block writes to its residual stream: zero in a copy, which is then the identity.
OUTPUT_PROJECTIONS = ("self_attn.o.", "cross_attn.o.", "ffn.2.")
TEXT_OUTPUT_PROJECTIONS = ("proj.", "mlp.2.")  # text_encoders._Block: x + proj(attention), x + mlp(x)


def block_sources(old: int, new: int) -> list[int]:
    """The old block each of the `new` blocks continues (non-decreasing, every old block used)."""
    return [j * old // new for j in range(new)]


def deepen_state(
    state: dict[str, torch.Tensor], old: int, new: int, outputs: tuple[str, ...] = OUTPUT_PROJECTIONS
) -> dict[str, torch.Tensor]:
    """The state dict of the grown model: old `blocks.*` renumbered, copies with zero `outputs` projections."""
    out = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    sources = block_sources(old, new)
    for j, i in enumerate(sources):
        copy = j > 0 and sources[j - 1] == i
        prefix = f"blocks.{i}."
        for k, v in state.items():
            if k.startswith(prefix):
                rest = k[len(prefix) :]
                zero = copy and rest.startswith(outputs)
                out[f"blocks.{j}.{rest}"] = torch.zeros_like(v) if zero else v.clone()
    return out


def longer_positions(table: torch.Tensor, length: int, seed: int = 0) -> torch.Tensor:
    """A learned position table (max_length, dim) with rows appended up to `length`, drawn as ByteTextEncoder
    initialises them (normal, std 0.02; seeded, so a conversion is reproducible)."""
    g = torch.Generator().manual_seed(seed)
    new = torch.randn(length - table.shape[0], table.shape[1], generator=g) * 0.02
    return torch.cat([table, new.to(table.dtype)])


def deepen(
    src: str | Path,
    out: str | Path,
    layers: int | None,
    text_layers: int | None = None,
    text_max_length: int | None = None,
    depth_reproject: bool = False,
) -> FullDiTConfig:
    """Write `src` with its transformer grown to `layers` blocks and/or its byte-level text encoder to `text_layers`
    layers and/or `text_max_length` tokens and/or its depth condition to read the reprojected first frame at `out`
    (storage types kept); its output is unchanged for prompts that fitted."""
    cfg = read_config(src)
    if layers is None and text_layers is None and text_max_length is None and not depth_reproject:
        raise InputError("--from deepen needs --layers, --text-layers, --text-max-length and/or --depth-reproject")
    old = cfg.model.layers
    layers = old if layers is None else layers
    if layers < old or (layers == old and text_layers is None and text_max_length is None and not depth_reproject):
        raise InputError(f"--layers {layers}: {src} already has {old} blocks; deepen grows a model (more than {old})")
    sources = block_sources(old, layers)
    picked = [j for j, i in enumerate(sources) if i in cfg.model.condition_layers]
    model = dataclasses.replace(cfg.model, layers=layers, condition_layers=tuple(picked))
    state = deepen_state(load_state(Path(src)), old, layers)  # layers == old: the same blocks
    text_path = Path(src) / TEXT_WEIGHTS
    text_state = load_file(str(text_path)) if text_path.is_file() else None
    text = cfg.text
    for flag, value in (("--text-layers", text_layers), ("--text-max-length", text_max_length)):
        if value is None:
            continue
        if cfg.text.kind != "byte":
            raise InputError(f"{flag}: {src} has a {cfg.text.kind} text encoder; only a byte encoder grows")
        if text_state is None:
            raise InputError(f"{flag}: {src} has no {TEXT_WEIGHTS}, the byte encoder's weights")
    if text_layers is not None:
        if text_layers <= cfg.text.layers:
            raise InputError(f"--text-layers {text_layers}: {src}'s text encoder already has {cfg.text.layers} layers")
        text_state = deepen_state(text_state, cfg.text.layers, text_layers, TEXT_OUTPUT_PROJECTIONS)
        text = dataclasses.replace(text, layers=text_layers)
    if text_max_length is not None:
        if text_max_length <= cfg.text.max_length:
            raise InputError(
                f"--text-max-length {text_max_length}: {src}'s text encoder already reads {cfg.text.max_length} tokens"
            )
        text_state["pos_embed.weight"] = longer_positions(text_state["pos_embed.weight"], text_max_length)
        text = dataclasses.replace(text, max_length=text_max_length)
    if depth_reproject:
        if "depth" not in model.conditions:
            raise InputError(f"--depth-reproject: {src} has no depth condition (it has: {list(model.conditions)})")
        if model.depth.reproject:
            raise InputError(f"--depth-reproject: {src}'s depth condition reprojects the first frame already")
        embed = state["conditions.depth.embed.weight"]
        state["conditions.depth.reproject.weight"] = torch.zeros(embed.shape[0], 2 * embed.shape[1], dtype=embed.dtype)
        state["conditions.depth.reproject.bias"] = torch.zeros(embed.shape[0], dtype=embed.dtype)
        model = dataclasses.replace(model, depth=dataclasses.replace(model.depth, reproject=True))
    grown = dataclasses.replace(cfg, model=model, text=text)
    save_states(out, grown, state, text_state)
    return grown
