"""Text encoders: prompts -> (features, mask) for the transformer's text cross-attention.

Two kinds: a small trainable byte-level encoder that needs no downloads (synthetic data, tests), and a frozen
(U)MT5 encoder loaded from a local directory, which is what Wan2.1 checkpoints expect.
Features are float32 and exactly zero wherever the mask is False; the caller casts to the transformer's dtype.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from fulldit.dtypes import parse_dtype
from fulldit.errors import InputError, check

BOS, EOS = 256, 257  # byte tokens are 0..255; padded positions hold 0 but are masked out everywhere
BYTE_VOCAB = 258


@runtime_checkable
class TextEncoder(Protocol):
    dim: int  # feature width fed to the transformer's text projection

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> features (B, L, dim) float32, mask (B, L) bool, True = real token."""
        ...


@dataclass(frozen=True)
class TextEncoderConfig:
    kind: str = "byte"  # "byte" | "t5"
    dim: int = 256  # byte encoder width (t5: taken from the model)
    layers: int = 2  # byte encoder
    heads: int = 4  # byte encoder
    max_length: int = 128  # byte tokens incl. BOS/EOS (byte) or T5 tokens (Wan uses 512)
    path: str = ""  # t5: local directory with tokenizer + encoder (or a diffusers pipeline directory)
    # t5, Wan2.1 convention: the context is always max_length long, zeros beyond the prompt, mask all True
    # (Wan cross-attends to the zero padding). Set True for Wan checkpoints.
    pad_to_max_length: bool = False
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check(self.kind in ("byte", "t5"), "text.kind", self.kind, "expected 'byte' or 't5'")
        check(self.dtype in ("float32", "bfloat16"), "text.dtype", self.dtype, "expected 'float32' or 'bfloat16'")
        for name in ("dim", "heads"):
            check(getattr(self, name) >= 1, f"text.{name}", getattr(self, name), "must be at least 1")
        check(self.layers >= 0, "text.layers", self.layers, "must be at least 0")
        check(self.max_length >= 2, "text.max_length", self.max_length, "must be at least 2 (BOS and EOS)")


def check_prompts(prompts: list[str]) -> None:
    # A bare string would silently be iterated character by character.
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise InputError("prompts must be a list of strings")
    if len(prompts) == 0:
        raise InputError("prompts: empty list, nothing to encode")


class _Block(nn.Module):
    """Pre-norm transformer encoder layer; padded keys are masked out of attention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = x + self.proj(rearrange(attn, "b h l d -> b l (h d)"))
        return x + self.mlp(self.norm2(x))


class ByteTextEncoder(nn.Module):
    """Trainable UTF-8 byte encoder, trained jointly with the transformer (the caller saves its state_dict).

    Tokens are BOS, the prompt's bytes, EOS; prompts longer than max_length are truncated, with a warning (once per
    process): a cut caption loses what it says last. Even "" has two tokens, so the mask is never all False.
    Initialisation draws from torch's global RNG (seed it first).
    """

    def __init__(self, dim: int = 256, layers: int = 2, heads: int = 4, max_length: int = 128) -> None:
        super().__init__()
        if dim <= 0 or heads <= 0 or dim % heads:
            raise InputError(f"byte text encoder: dim={dim} must be a positive multiple of heads={heads}")
        if max_length < 2:
            raise InputError(f"byte text encoder: max_length={max_length} must be at least 2 (BOS and EOS)")
        self.dim = dim
        self.max_length = max_length
        self.token_embed = nn.Embedding(BYTE_VOCAB, dim)
        self.pos_embed = nn.Embedding(max_length, dim)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed.weight, std=0.02)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> ids (B, L) long, mask (B, L) bool, padded to the longest prompt in the batch."""
        check_prompts(prompts)
        encoded = [p.encode("utf-8") for p in prompts]
        if any(len(b) > self.max_length - 2 for b in encoded):  # once per process (the warning's location)
            warnings.warn(
                f"byte text encoder: a prompt is longer than its {self.max_length - 2} bytes; the rest is not read "
                "(text.max_length; `fulldit convert --from deepen --text-max-length N` extends a trained encoder)",
                stacklevel=2,
            )
        rows = [[BOS, *b[: self.max_length - 2], EOS] for b in encoded]
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        return ids, mask

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.token_embed.weight.device
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(device), mask.to(device)
        x = self.token_embed(ids) + self.pos_embed(torch.arange(ids.shape[1], device=device))
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x) * mask[..., None]
        return x.float(), mask

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(prompts)


def find_t5_dirs(path: str | os.PathLike) -> tuple[Path, Path]:
    """(model dir, tokenizer dir): both `path`, or `path/text_encoder` and `path/tokenizer` of a diffusers pipeline.

    text_encoder/ comes first: a Wan2.1 release written by `fulldit convert --to wan2.1` keeps the transformer's own
    config.json at its root, beside text_encoder/ and tokenizer/.
    """
    if not str(path):
        raise InputError("t5 text encoder: no path given (set text_encoder.path to a local directory)")
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: t5 text encoder directory does not exist")
    model_dir = next((d for d in (root / "text_encoder", root) if (d / "config.json").is_file()), None)
    if model_dir is None:
        raise InputError(f"{root}: not a T5 model directory (no config.json, nor text_encoder/config.json)")
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "spiece.model")
    has_tokenizer = [d for d in (root, root / "tokenizer") if any((d / f).is_file() for f in tokenizer_files)]
    if not has_tokenizer:
        raise InputError(f"{root}: no tokenizer (tokenizer.json / tokenizer_config.json / spiece.model) found")
    return model_dir, has_tokenizer[0]


class T5TextEncoder:
    """Frozen UMT5 (Wan2.1) or T5 encoder from a local directory; `last_hidden_state`, padded positions zeroed."""

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        max_length: int = 512,
        pad_to_max_length: bool = False,
    ) -> None:
        if max_length < 1:
            raise InputError(f"t5 text encoder: max_length={max_length} must be positive")
        torch_dtype = parse_dtype(dtype)
        model_dir, tokenizer_dir = find_t5_dirs(path)

        from transformers import AutoConfig, AutoTokenizer, T5EncoderModel, UMT5EncoderModel  # deferred: slow import

        classes = {"umt5": UMT5EncoderModel, "t5": T5EncoderModel}
        try:
            config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError) as e:
            raise InputError(f"{model_dir}: unreadable model config ({e})") from e
        if config.model_type not in classes:
            raise InputError(f"{model_dir}: model_type {config.model_type!r} is neither umt5 nor t5")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
            model = classes[config.model_type].from_pretrained(model_dir, local_files_only=True, dtype=torch_dtype)
        except (OSError, ValueError, RuntimeError) as e:
            raise InputError(f"{path}: cannot load the T5 text encoder ({e})") from e
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.dim: int = int(config.d_model)
        self.max_length = max_length
        self.pad_to_max_length = pad_to_max_length

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        check_prompts(prompts)
        # Padding only to the longest prompt is enough even for pad_to_max_length: padded keys are masked, so
        # real tokens come out the same, and the zero tail is appended below without running the encoder on it.
        batch = self.tokenizer(
            prompts, padding="longest", max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device).bool()
        if ids.shape[1] == 0:  # a tokenizer that adds no EOS, given only empty prompts
            ids = torch.zeros(len(prompts), 1, dtype=torch.long, device=self.device)
            mask = torch.zeros_like(ids, dtype=torch.bool)
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        hidden = hidden.float() * mask[..., None]
        if self.pad_to_max_length:
            hidden = F.pad(hidden, (0, 0, 0, self.max_length - hidden.shape[1]))
            return hidden, torch.ones(hidden.shape[:2], dtype=torch.bool, device=self.device)
        # A prompt with no tokens at all would leave an all-False mask row (NaN attention); attend to one zero.
        mask[:, 0] |= ~mask.any(dim=1)
        return hidden, mask


def build_text_encoder(cfg: TextEncoderConfig, device: str | torch.device = "cpu") -> TextEncoder:
    if cfg.kind == "byte":
        encoder = ByteTextEncoder(dim=cfg.dim, layers=cfg.layers, heads=cfg.heads, max_length=cfg.max_length)
        return encoder.to(device=device, dtype=parse_dtype(cfg.dtype))
    if cfg.kind == "t5":
        return T5TextEncoder(
            cfg.path, device=device, dtype=cfg.dtype, max_length=cfg.max_length, pad_to_max_length=cfg.pad_to_max_length
        )
    raise InputError(f"text encoder kind {cfg.kind!r}: expected 'byte' or 't5'")
