"""`fulldit convert`: a pretrained text-to-video transformer (Wan2.1) into a FullDiT checkpoint directory.

The backbone is the same network tensor for tensor (wan.py maps the names), so with no condition given the
converted model computes what Wan2.1 computes. The condition tokenizers FullDiT adds are freshly initialised and
every block reads condition tokens through a zero-initialised gate (`model.condition_gate`), so the output stays
Wan2.1's with conditions given too, until training opens the gates. `gate` chooses how the gated video queries merge
the condition keys ("lse": one softmax in which the condition keys weigh the gate, FullDiT's at gate 1; "separate":
a second softmax added times the gate, as adapters do), or "none": no gate, the conditions appended to the sequence
as FullDiT does, acting from the first step.

Weights stream tensor by tensor: the source's safetensors are memory-mapped (`safe_open`) and each output shard
is read, cast and written before the next one is touched (`checkpoint.write_shards`), so a 14B model converts in
the memory of one shard (or of its largest tensor), not of the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from fulldit.checkpoint import (
    CONFIG,
    MAX_SHARD_BYTES,
    TEXT_WEIGHTS,
    load_state,
    read_config,
    save_states,
    write_config,
    write_shards,
)
from fulldit.codecs import CodecConfig
from fulldit.codecs.vae import find_vae_dir
from fulldit.conditions import build_conditions
from fulldit.config import CameraConfig, FlowConfig, FullDiTConfig, ModelConfig, SampleConfig
from fulldit.convert.wan import WanArchitecture, WanSource, find_wan_source, fulldit_name, read_json
from fulldit.errors import InputError
from fulldit.model import FP32_PARAMS, FullDiT, init_linears
from fulldit.text_encoders import TextEncoderConfig, find_t5_dirs

__all__ = ["convert_wan", "open_gates", "wan_config"]

WAN_VAE_TIME_STRIDE = 4  # the Wan VAE encodes frame 0, then 4 frames per latent (codecs/vae.py checks it)
# Wan2.1's own sampling defaults (text-to-video, 480p): 81 frames at 16 fps, 50 steps, shift 5, guidance 5.
WAN_SAMPLE = SampleConfig(
    frames=81, height=480, width=832, fps=16.0, steps=50, shift=5.0, guidance=5.0, text_guidance=5.0
)
SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}
STORE_DTYPES = ("keep", "float32", "bfloat16")
GATE_CHOICES = ("lse", "separate", "none")  # how converted conditions are read (module docstring)


def wan_config(
    arch: WanArchitecture,
    vae: str,
    text_encoder: str,
    conditions: Sequence[str],
    text_dtype: str = "bfloat16",
    gate: str = "lse",
) -> FullDiTConfig:
    """The FullDiT config of a converted Wan2.1 model: its shape, Wan's VAE, UMT5 and sampling defaults."""
    if gate not in GATE_CHOICES:
        raise InputError(f"gate {gate!r}: expected one of {', '.join(GATE_CHOICES)}")
    model = ModelConfig(
        in_channels=arch.in_channels,
        patch=arch.patch,
        dim=arch.dim,
        layers=arch.layers,
        heads=arch.heads,
        ffn_dim=arch.ffn_dim,
        text_dim=arch.text_dim,
        freq_dim=arch.freq_dim,
        eps=arch.eps,
        rope_theta=10000.0,  # Wan2.1's, fixed in its code
        attention="full",
        condition_gate=gate != "none",
        gate_merge="lse" if gate == "none" else gate,
        conditions=tuple(conditions),
        camera=CameraConfig(frames_per_token=WAN_VAE_TIME_STRIDE * arch.patch[0]),
    )
    return FullDiTConfig(
        model=model,
        codec=CodecConfig(kind="wan-vae", path=vae, dtype="float32"),  # Wan2.1 runs its VAE in fp32
        # Wan2.1 always feeds text_len (512) context rows: the prompt's features, then zeros it cross-attends to.
        text=TextEncoderConfig(
            kind="t5", path=text_encoder, max_length=arch.text_len, pad_to_max_length=True, dtype=text_dtype
        ),
        flow=FlowConfig(prediction="velocity"),  # Wan2.1 predicts noise - x0 at sigma = t: our convention
        sample=WAN_SAMPLE,
    )


def companion_dirs(source: WanSource, vae: str | Path | None, text_encoder: str | Path | None) -> tuple[str, str]:
    """The VAE and text-encoder directories (absolute): given, or the pipeline's own vae/ and text_encoder/."""
    if vae is None:
        if not (source.pipeline and (source.root / "vae" / "config.json").is_file()):
            raise InputError(
                f"{source.root}: no diffusers VAE here (looked for vae/config.json of a pipeline): pass --vae DIR, "
                "an AutoencoderKLWan directory (e.g. the vae/ of Wan-AI/Wan2.1-T2V-1.3B-Diffusers)"
            )
        vae = source.root / "vae"
    if text_encoder is None:
        if not (source.pipeline and (source.root / "text_encoder" / "config.json").is_file()):
            raise InputError(
                f"{source.root}: no transformers text encoder here (looked for text_encoder/config.json and "
                "tokenizer/ of a pipeline): pass --text-encoder DIR, a UMT5 directory with its tokenizer"
            )
        text_encoder = source.root
    return str(Path(vae).resolve()), str(Path(text_encoder).resolve())


def check_companions(arch: WanArchitecture, vae: str, text_encoder: str) -> None:
    """Read only the companions' configs: the VAE's latent channels and the encoder's width must fit the model."""
    vae_config = read_json(find_vae_dir(vae) / "config.json")
    if vae_config.get("_class_name", "AutoencoderKLWan") != "AutoencoderKLWan":
        raise InputError(f"{vae}: holds a {vae_config['_class_name']}, expected an AutoencoderKLWan")
    if vae_config.get("z_dim") != arch.in_channels:
        raise InputError(f"{vae}: VAE z_dim {vae_config.get('z_dim')} != the transformer's {arch.in_channels} channels")
    model_dir, _ = find_t5_dirs(text_encoder)
    text_config = read_json(model_dir / "config.json")
    if text_config.get("model_type") not in ("umt5", "t5"):
        raise InputError(f"{model_dir}: model_type {text_config.get('model_type')!r} is neither umt5 nor t5")
    if text_config.get("d_model") != arch.text_dim:
        raise InputError(f"{model_dir}: d_model {text_config.get('d_model')} != the model's text_dim {arch.text_dim}")


def new_tensors(cfg: ModelConfig, seed: int, gate_init: float = 0.0) -> dict[str, torch.Tensor]:
    """What FullDiT adds to the backbone: condition tokenizers (FullDiT's own init) and, gated, a gate per block and
    head at `gate_init` (0: closed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        conditions = build_conditions(cfg)
        init_linears(conditions)
    tensors = {f"conditions.{k}": v for k, v in conditions.state_dict().items()}
    if cfg.condition_gate:
        tensors.update({f"blocks.{i}.cond_gate": torch.full((cfg.heads,), gate_init) for i in range(cfg.layers)})
    return tensors


def _store_dtype(name: str, dtype: torch.dtype, store: str) -> torch.dtype:
    """keep: as found; float32; bfloat16 except what runs in fp32 anyway (timestep embedding, modulation, norms)."""
    if store == "keep" or not dtype.is_floating_point:
        return dtype
    if store == "bfloat16" and not any(k in name for k in FP32_PARAMS):
        return torch.bfloat16
    return torch.float32


def _names(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" (and {len(items) - n} more)" if len(items) > n else "")


class SourceTensors:
    """A Wan2.1 source's tensors under their FullDiT names, memory-mapped: shapes and dtypes without reading data."""

    def __init__(self, source: WanSource, stack: ExitStack) -> None:
        self.source = source
        self.where: dict[str, tuple[Any, str, Path]] = {}  # FullDiT name -> (open file, source name, file path)
        self.unmapped: list[str] = []  # source tensors without a FullDiT counterpart
        for path in source.files:
            try:
                handle = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
            except (OSError, SafetensorError) as err:
                raise InputError(f"{path}: not a readable safetensors file ({err})") from err
            for name in handle.keys():
                ours = fulldit_name(name, source.layout)
                if ours is None:
                    self.unmapped.append(name)
                elif ours in self.where:
                    raise InputError(f"{path}: tensor {name} appears twice (also in {self.where[ours][2].name})")
                else:
                    self.where[ours] = (handle, name, path)

    def check(self, expected: dict[str, tuple[int, ...]], added: set[str]) -> dict[str, torch.dtype]:
        """Every tensor the model needs (but `added`) present with its shape, nothing else; -> source dtypes."""
        missing = [k for k in expected if k not in self.where and k not in added]
        unexpected = sorted(self.unmapped + [self.where[k][1] for k in self.where if k not in expected or k in added])
        if missing or unexpected:
            raise InputError(
                f"{self.source.transformer}: the weights do not match a Wan2.1 text-to-video transformer "
                f"({self.source.layout} layout): missing {len(missing)} [{_names(missing)}], "
                f"unexpected {len(unexpected)} [{_names(unexpected)}]"
            )
        dtypes = {}
        for name, (handle, src_name, path) in self.where.items():
            piece = handle.get_slice(src_name)
            found, dtype = tuple(piece.get_shape()), SAFETENSORS_DTYPES.get(piece.get_dtype())
            if dtype is None:
                raise InputError(f"{path}: tensor {src_name} has dtype {piece.get_dtype()}, expected a float type")
            if found != expected[name]:
                config = self.source.transformer / "config.json"
                raise InputError(f"{path}: tensor {src_name} has shape {found}, {config} implies {expected[name]}")
            dtypes[name] = dtype
        return dtypes

    def load(self, name: str) -> torch.Tensor:
        handle, src_name, _ = self.where[name]
        return handle.get_tensor(src_name)


def convert_wan(
    src: str | Path,
    out: str | Path,
    vae: str | Path | None = None,
    text_encoder: str | Path | None = None,
    conditions: Sequence[str] = ("camera", "reference", "depth"),
    store: str = "keep",
    text_dtype: str = "bfloat16",
    seed: int = 0,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    gate: str = "lse",
    gate_init: float = 0.0,
) -> FullDiTConfig:
    """Convert a Wan2.1 text-to-video transformer directory into a FullDiT checkpoint directory `out`.

    Args:
        src: a diffusers WanTransformer3DModel directory, a diffusers pipeline directory, or Wan2.1's own release.
        vae, text_encoder: local diffusers AutoencoderKLWan / transformers UMT5 directories; default the pipeline's.
        conditions: FullDiT condition tokenizers to add (new, trained later).
        store: "keep" the source dtypes, or store "float32" / "bfloat16" (fp32-run parts stay fp32).
        gate: "lse" (default) or "separate": the conditions read through zero gates (the backbone's output until
            trained); "none": appended without a gate, as FullDiT does (they act from the start).
        gate_init: the gates' start in [0, 1]. 0 (default) is the backbone exactly, but a closed gate passes no
            gradient to the condition modules behind it, so training must open it first on their random features;
            a small value (e.g. 0.05) lets them learn from the first step at the cost of a small initial change.
    """
    if store not in STORE_DTYPES:
        raise InputError(f"dtype {store!r}: expected one of {', '.join(STORE_DTYPES)}")
    source = find_wan_source(src)
    out = Path(out)
    if out.resolve() in (source.root.resolve(), source.transformer.resolve()):
        raise InputError(f"{out}: the output directory must not be the source directory")
    vae_dir, text_dir = companion_dirs(source, vae, text_encoder)
    check_companions(source.arch, vae_dir, text_dir)
    config = wan_config(source.arch, vae_dir, text_dir, conditions, text_dtype, gate)
    if not 0 <= gate_init <= 1 or (gate_init and not config.model.condition_gate):
        raise InputError(f"gate_init {gate_init}: must be in [0, 1], and 0 without a gate (--gate none)")

    with torch.device("meta"):  # names and shapes only: nothing is allocated
        expected = {k: tuple(v.shape) for k, v in FullDiT(config.model).state_dict().items()}
    added = new_tensors(config.model, seed, gate_init)
    with ExitStack() as stack:
        source_tensors = SourceTensors(source, stack)
        dtypes = source_tensors.check(expected, set(added)) | {k: v.dtype for k, v in added.items()}
        dtypes = {k: _store_dtype(k, dtypes[k], store) for k in expected}  # in the model's order

        def tensor(name: str) -> torch.Tensor:  # read (from the memory map) and cast one tensor
            t = added[name] if name in added else source_tensors.load(name)
            return t.to(dtypes[name]).contiguous()

        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).unlink(missing_ok=True)  # an interrupted conversion must not look like a checkpoint
        sizes = [(k, torch.Size(shape).numel() * dtypes[k].itemsize) for k, shape in expected.items()]
        write_shards(out, sizes, tensor, max_shard_bytes)
    write_config(out, config)
    return config


def open_gates(src: str | Path, out: str | Path, tolerance: float = 1e-6) -> FullDiTConfig:
    """A gated `attention: full` checkpoint whose gates are all open, as the plain full-attention model it equals.

    With every gate at 1 the log-sum-exp merge (`gate_merge: lse`, model.gated_video_attention) is one softmax over
    [video, conditions], so dropping the gates changes nothing but the layout's name. Gates not open (within
    `tolerance`) are an error: that model is not plain full attention. Written as any checkpoint is (config last),
    storage types kept.
    """
    cfg = read_config(src)
    if not cfg.model.condition_gate:
        raise InputError(f"{src}: has no condition gates (model.condition_gate is false)")
    if cfg.model.attention != "full":
        raise InputError(f"{src}: attention is {cfg.model.attention!r}; only gated full attention opens into full")
    if cfg.model.gate_merge != "lse":
        raise InputError(f"{src}: gate_merge is {cfg.model.gate_merge!r}; a separate-softmax gate at 1 adds a second "
                         "softmax, it is not plain full attention (only gate_merge 'lse' opens into full)")  # fmt: skip
    state = load_state(Path(src))
    gates = {k: v.float().clamp(0, 1) for k, v in state.items() if k.endswith(".cond_gate")}
    closed = {k: float(v.min()) for k, v in gates.items() if float((1 - v).max()) > tolerance}
    if closed:
        name, value = next(iter(closed.items()))
        raise InputError(f"{src}: {len(closed)} of {len(gates)} gates are not open (e.g. {name} has {value:.4g}); "
                         "only a model with every gate at 1 is plain full attention")  # fmt: skip
    model = dataclasses.replace(cfg.model, condition_gate=False)
    plain = dataclasses.replace(cfg, model=model)
    text_path = Path(src) / TEXT_WEIGHTS
    text = load_file(str(text_path)) if text_path.is_file() else None
    save_states(out, plain, {k: v for k, v in state.items() if k not in gates}, text)
    return plain
