"""The one exception type for bad user input.

Anything a user hands us (a file, a size, a condition name) that is wrong raises `InputError` with
a message that names the thing and the problem. The CLI prints it on one line and exits with code 2;
the Python API lets it propagate (it is a `ValueError`).
"""

from __future__ import annotations

from typing import Any


class InputError(ValueError):
    """Bad user input: a missing or malformed file, a wrong size or frame count, an unknown name."""


def check(ok: bool, name: str, value: Any, rule: str) -> None:
    """InputError `name=value: rule` unless `ok`: how configs state the range a field takes."""
    if not ok:
        raise InputError(f"{name}={value!r}: {rule}")
