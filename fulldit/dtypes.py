"""Dtype names as configs spell them."""

from __future__ import annotations

import torch

from fulldit.errors import InputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def parse_dtype(name: str) -> torch.dtype:
    """'float32' | 'bfloat16' -> torch dtype; anything else is an InputError."""
    if name not in DTYPES:
        raise InputError(f"dtype {name!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[name]
