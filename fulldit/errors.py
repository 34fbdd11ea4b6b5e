"""The one exception type for bad user input.

Anything a user hands us (a file, a size, a condition name) that is wrong raises `InputError` with
a message that names the thing and the problem. The CLI prints it on one line and exits with code 2;
the Python API lets it propagate (it is a `ValueError`).
"""


class InputError(ValueError):
    """Bad user input: a missing or malformed file, a wrong size or frame count, an unknown name."""
