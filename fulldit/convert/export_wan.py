"""`fulldit convert --from fulldit --to wan2.1`: a text-to-video fulldit checkpoint as Wan2.1's own release.

Why: no Wan2.1 weights can be downloaded where this project is tested, so a backbone pretrained here on the
synthetic world stands in for one (issue #15). Written in Wan2.1's original layout, it goes through the user's real
path, `fulldit convert --from wan2.1`, like the release would.

Which checkpoints: those `convert_wan` could have produced from a Wan2.1 text-to-video transformer, without what
FullDiT adds. A T2V release has no conditions, so `model.conditions` must be empty; the per-block condition gates,
inert without conditions, are dropped. The network must also compute what Wan2.1's code computes with these
weights: velocity prediction (noise - x0) and rotary theta 10000 (fixed in Wan's code).

Names: FullDiT's backbone keeps Wan2.1's original names. The inverse of the converter's `fulldit_name(name,
"original")` is checked name by name, and the names and shapes written must be exactly those `convert_wan` expects
from the config.json written (its own functions decide), so the exporter and the converter cannot drift apart.

Written, atomically (a temporary directory renamed into place):

    OUT/config.json                                WanModel's arguments (dim, num_heads, num_layers, ...)
    OUT/diffusion_pytorch_model.safetensors        or, above the shard size, shards
    OUT/diffusion_pytorch_model-0000i-of-0000N.safetensors + diffusion_pytorch_model.safetensors.index.json
    OUT/vae/                                       the checkpoint's diffusers AutoencoderKLWan, when it has one
    OUT/text_encoder/, OUT/tokenizer/              its transformers UMT5 and tokenizer, when it has one

Companions are hard-linked where the file system allows (a UMT5-XXL is 11 GB), copied otherwise. Tensors stream
one output shard at a time from the memory-mapped checkpoint, as in the converter.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fulldit.atomic import atomic_dir
from fulldit.checkpoint import INDEX as FULLDIT_INDEX
from fulldit.checkpoint import MAX_SHARD_BYTES, read_config, shard_groups
from fulldit.checkpoint import WEIGHTS as FULLDIT_WEIGHTS
from fulldit.codecs.vae import find_vae_dir
from fulldit.config import FullDiTConfig
from fulldit.convert import SAFETENSORS_DTYPES, STORE_DTYPES, _names, _store_dtype, new_tensors, wan_config
from fulldit.convert.wan import (
    INDEX,
    ORIGINAL_DEFAULTS,
    WEIGHTS,
    WanArchitecture,
    fulldit_name,
    original_architecture,
    read_json,
    weight_files,
)
from fulldit.errors import InputError
from fulldit.model import FullDiT
from fulldit.text_encoders import find_t5_dirs

__all__ = ["ExportResult", "export_wan", "original_config"]

WAN_ROPE_THETA = 10000.0  # fixed in Wan2.1's code
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".gguf")


@dataclass
class ExportResult:
    """What `export_wan` wrote, and what the user must still supply to convert it back."""

    out: Path
    config: dict[str, Any]
    weight_files: list[str]
    companions: list[str] = field(default_factory=list)  # subdirectories written: vae, text_encoder, tokenizer
    notes: list[str] = field(default_factory=list)

    def convert_command(self) -> str:
        """The `fulldit convert` line that reads the release back (placeholders where a companion is missing)."""
        vae = str(self.out / "vae") if "vae" in self.companions else "VAE_DIR"
        text = str(self.out) if "text_encoder" in self.companions else "UMT5_DIR"
        return f"fulldit convert --from wan2.1 {self.out} --vae {vae} --text-encoder {text} --out CKPT"

    def summary(self) -> str:
        c = self.config
        lines = [
            f"wrote {self.out}: Wan2.1 original layout (dim {c['dim']}, {c['num_layers']} layers, {c['num_heads']} "
            f"heads) in {len(self.weight_files)} weight file(s)"
            + (f"; companions {', '.join(f'{k}/' for k in self.companions)}" if self.companions else ""),
            *(f"note: {n}" for n in self.notes),
            f"read it back with: {self.convert_command()}",
        ]
        return "\n".join(lines)


def architecture(cfg: FullDiTConfig) -> WanArchitecture:
    """The Wan2.1 shape of a fulldit model; InputError where Wan2.1's code would compute something else."""
    m = cfg.model
    if m.conditions:
        raise InputError(
            f"model.conditions is {list(m.conditions)}: a Wan2.1 text-to-video release has no conditions; export "
            "a text-to-video checkpoint (model.conditions: [])"
        )
    if m.rope_theta != WAN_ROPE_THETA:
        raise InputError(f"model.rope_theta is {m.rope_theta:g}; Wan2.1's code fixes it at {WAN_ROPE_THETA:g}")
    if cfg.flow.prediction != "velocity":
        raise InputError(
            f"flow.prediction is {cfg.flow.prediction!r}; Wan2.1 predicts the velocity (noise - x0), so only a "
            "velocity model exports"
        )
    text_len = cfg.text.max_length if cfg.text.kind == "t5" else int(ORIGINAL_DEFAULTS["text_len"])
    return WanArchitecture(
        in_channels=m.in_channels,
        patch=tuple(m.patch),
        dim=m.dim,
        layers=m.layers,
        heads=m.heads,
        ffn_dim=m.ffn_dim,
        text_dim=m.text_dim,
        freq_dim=m.freq_dim,
        eps=m.eps,
        text_len=text_len,
    )


def original_config(arch: WanArchitecture) -> dict[str, Any]:
    """Wan2.1's config.json (WanModel's arguments) for `arch`, every key written out, defaults included."""
    return {
        "_class_name": "WanModel",
        **ORIGINAL_DEFAULTS,
        "patch_size": list(arch.patch),
        "text_len": arch.text_len,
        "in_dim": arch.in_channels,
        "dim": arch.dim,
        "ffn_dim": arch.ffn_dim,
        "freq_dim": arch.freq_dim,
        "text_dim": arch.text_dim,
        "out_dim": arch.in_channels,
        "num_heads": arch.heads,
        "num_layers": arch.layers,
        "eps": arch.eps,
    }


def release_names(arch: WanArchitecture) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """(name -> shape of every tensor a release holds, the inert gates) of what `convert_wan` expects for `arch`.

    Wan2.1's original layout keeps FullDiT's names (the converter maps each to itself), so a name is written as is;
    one the converter would rename has no place in a release."""
    config = wan_config(arch, "", "", ())
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in FullDiT(config.model).state_dict().items()}
    added = set(new_tensors(config.model, 0))  # what the converter adds itself (the gates): not in a release
    for ours in shapes.keys() - added:
        if fulldit_name(ours, "original") != ours:
            raise InputError(f"tensor {ours}: has no Wan2.1 original name (the converter maps it elsewhere)")
    return {k: v for k, v in shapes.items() if k not in added}, added


def open_tensors(src: Path, stack: ExitStack) -> dict[str, tuple[Any, Path]]:
    """name -> (memory-mapped file, path) of every tensor in the checkpoint."""
    where: dict[str, tuple[Any, Path]] = {}
    for path in weight_files(src, FULLDIT_INDEX, FULLDIT_WEIGHTS, "fulldit checkpoint"):
        try:
            handle = stack.enter_context(safe_open(str(path), framework="pt", device="cpu"))
        except (OSError, SafetensorError) as err:
            raise InputError(f"{path}: not a readable safetensors file ({err})") from err
        for name in handle.keys():
            where[name] = (handle, path)
    return where


def _link_or_copy(src: str, dst: str) -> str:
    """Hard link (no copy of a multi-GB encoder) where one file system holds both; a plain copy otherwise."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _has_weights(directory: Path) -> bool:
    return any(p.name.endswith(WEIGHT_SUFFIXES) for p in directory.iterdir())


def vae_companion(path: str, arch: WanArchitecture) -> tuple[Path | None, str]:
    """(the diffusers AutoencoderKLWan directory to write as vae/, or None and why not)."""
    try:
        directory = find_vae_dir(path)
        config = read_json(directory / "config.json")
    except InputError as err:
        return None, str(err)
    if config.get("_class_name", "AutoencoderKLWan") != "AutoencoderKLWan":
        return None, f"{directory}: holds a {config['_class_name']}, not a diffusers AutoencoderKLWan"
    if config.get("z_dim") != arch.in_channels:
        return None, f"{directory}: VAE z_dim {config.get('z_dim')} != the transformer's {arch.in_channels} channels"
    if not _has_weights(directory):
        return None, f"{directory}: no weight files"
    return directory, ""


def text_companion(path: str, arch: WanArchitecture) -> tuple[tuple[Path, Path] | None, str]:
    """(the transformers UMT5/T5 model and tokenizer directories, or None and why not)."""
    try:
        model_dir, tokenizer_dir = find_t5_dirs(path)
        config = read_json(model_dir / "config.json")
    except InputError as err:
        return None, str(err)
    if config.get("model_type") not in ("umt5", "t5"):
        return None, f"{model_dir}: model_type {config.get('model_type')!r} is neither umt5 nor t5"
    if config.get("d_model") != arch.text_dim:
        return None, f"{model_dir}: d_model {config.get('d_model')} != the model's text_dim {arch.text_dim}"
    if not _has_weights(model_dir):
        return None, f"{model_dir}: no weight files"
    return (model_dir, tokenizer_dir), ""


def write_weights(
    out: Path,
    order: list[str],
    tensors: dict[str, tuple[Any, Path]],
    dtypes: dict[str, torch.dtype],
    max_shard_bytes: int,
) -> list[str]:
    """Wan2.1's weight files in `out`: one file, or numbered shards plus the index its loaders read."""
    sizes = [(k, tensors[k][0].get_slice(k).get_shape(), dtypes[k]) for k in order]
    nbytes = [(k, torch.Size(shape).numel() * dtype.itemsize) for k, shape, dtype in sizes]
    groups = shard_groups(nbytes, max_shard_bytes)
    if len(groups) == 1:
        files = [WEIGHTS]
    else:
        stem = WEIGHTS.removesuffix(".safetensors")
        files = [f"{stem}-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    for name, group in zip(files, groups):  # one shard's tensors in memory at a time
        shard = {k: tensors[k][0].get_tensor(k).to(dtypes[k]).contiguous() for k in group}
        save_file(shard, str(out / name), metadata={"format": "pt"})
    if len(files) > 1:
        weight_map = {k: name for name, group in zip(files, groups) for k in group}
        index = {"metadata": {"total_size": sum(n for _, n in nbytes)}, "weight_map": weight_map}
        (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return files


def export_wan(
    src: str | Path,
    out: str | Path,
    vae: str | Path | None = None,
    text_encoder: str | Path | None = None,
    store: str = "keep",
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> ExportResult:
    """Write the text-to-video fulldit checkpoint `src` as a Wan2.1 original release directory `out` (new or empty).

    Args:
        vae, text_encoder: companions to write as vae/ and text_encoder/ + tokenizer/; default the checkpoint's own
            (codec.path of a wan-vae codec, text.path of a t5 text encoder). Left out, with a note, when they are not
            diffusers / transformers directories that fit the model.
        store: "keep" the checkpoint's dtypes, or "float32" / "bfloat16" (fp32-run parts stay fp32).
    """
    if store not in STORE_DTYPES:
        raise InputError(f"dtype {store!r}: expected one of {', '.join(STORE_DTYPES)}")
    src, out = Path(src), Path(out)
    cfg = read_config(src)
    try:
        arch = architecture(cfg)
    except InputError as err:
        raise InputError(f"{src}: {err}") from None
    config = original_config(arch)
    if original_architecture(config, out / "config.json") != arch:  # the converter's reading of what we write
        raise InputError(f"{src}: its shape does not survive Wan2.1's config.json ({arch})")
    shapes, gates = release_names(arch)

    notes: list[str] = []
    vae_path = str(vae) if vae is not None else (cfg.codec.path if cfg.codec.kind == "wan-vae" else "")
    text_path = str(text_encoder) if text_encoder is not None else (cfg.text.path if cfg.text.kind == "t5" else "")
    vae_dir, why = vae_companion(vae_path, arch) if vae_path else (None, "")
    if vae_dir is None:
        notes.append(
            f"no vae/ written ({why or f'the codec is {cfg.codec.kind!r}, not a Wan VAE'}): converting back needs "
            f"--vae DIR, an AutoencoderKLWan with z_dim {arch.in_channels} in the latent space the model was trained in"
        )
    text_dirs, why = text_companion(text_path, arch) if text_path else (None, "")
    if text_dirs is None:
        notes.append(
            f"no text_encoder/ written ({why or f'the text encoder is {cfg.text.kind!r}, not UMT5/T5'}): converting "
            f"back needs --text-encoder DIR, a UMT5 of width {arch.text_dim} with its tokenizer"
        )
    if cfg.text.kind == "t5" and not cfg.text.pad_to_max_length:
        notes.append(
            f"text.pad_to_max_length is false, but Wan2.1 feeds {arch.text_len} context rows (zeros past the prompt)"
        )

    with ExitStack() as stack:
        tensors = open_tensors(src, stack)
        missing = [k for k in shapes if k not in tensors]
        extra = sorted(k for k in tensors if k not in shapes and k not in gates)
        if missing or extra:
            raise InputError(
                f"{src}: weights are not a Wan2.1 text-to-video backbone: missing {len(missing)} [{_names(missing)}], "
                f"unexpected {len(extra)} [{_names(extra)}]"
            )
        dtypes: dict[str, torch.dtype] = {}
        for name, shape in shapes.items():
            piece = tensors[name][0].get_slice(name)
            found, dtype = tuple(piece.get_shape()), SAFETENSORS_DTYPES.get(piece.get_dtype())
            if found != shape:
                raise InputError(f"{tensors[name][1]}: tensor {name} has shape {found}, the config implies {shape}")
            if dtype is None:
                raise InputError(f"{tensors[name][1]}: tensor {name} has dtype {piece.get_dtype()}, not a float")
            dtypes[name] = _store_dtype(name, dtype, store)

        dropped = [k for k in tensors if k in gates]
        companions: list[str] = []
        with atomic_dir(out) as tmp:
            files = write_weights(tmp, list(shapes), tensors, dtypes, max_shard_bytes)
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            if vae_dir is not None:
                shutil.copytree(vae_dir, tmp / "vae", copy_function=_link_or_copy)
                companions.append("vae")
            if text_dirs is not None:
                model_dir, tokenizer_dir = text_dirs
                shutil.copytree(model_dir, tmp / "text_encoder", copy_function=_link_or_copy)
                skip = shutil.ignore_patterns(*(f"*{s}" for s in WEIGHT_SUFFIXES))  # tokenizer files only
                shutil.copytree(tokenizer_dir, tmp / "tokenizer", copy_function=_link_or_copy, ignore=skip)
                companions += ["text_encoder", "tokenizer"]
    if dropped:
        notes.append(f"dropped {len(dropped)} condition gates (inert without conditions; no place in a T2V release)")
    if cfg.text.kind == "byte":
        notes.append("the byte text encoder's weights (text_encoder.safetensors) have no place in Wan2.1's layout")
    return ExportResult(out, config, files, companions, notes)
