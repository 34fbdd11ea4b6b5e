"""Every third-party module the package imports is a declared dependency (or in an extra), so a fresh install runs.

Read from the installed metadata (`pip install -e .` writes pyproject.toml's lists there); `.ci/run` checks the same
end to end by running the suite in a fresh virtual environment.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fulldit"
NEEDS = {"torch.utils.tensorboard": "tensorboard"}  # modules of one distribution that import another one


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules() -> dict[str, str]:
    """Absolute third-party imports of the package -> a file that makes it."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in sys.stdlib_module_names | {"fulldit"}:
                    found.setdefault(name, str(path.relative_to(PACKAGE.parent)))
    return found


def test_every_import_is_a_declared_dependency() -> None:
    declared = {normalize(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in requires("fulldit") or []}
    dists = packages_distributions()
    missing = []
    for module, where in imported_modules().items():
        providers = {normalize(d) for d in dists.get(module.split(".")[0], [module.split(".")[0]])}
        if not providers & declared:
            missing.append(f"{module} ({where}) needs one of {sorted(providers)}")
        for prefix, dist in NEEDS.items():
            if f"{module}.".startswith(f"{prefix}.") and normalize(dist) not in declared:
                missing.append(f"{module} ({where}) needs {dist}")
    assert not missing, missing


def test_the_scan_sees_the_imports() -> None:
    modules = imported_modules()
    assert {"torch", "numpy", "av", "yaml", "torch.utils.tensorboard", "gradio"} <= set(modules)
