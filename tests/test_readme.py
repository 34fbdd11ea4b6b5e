"""The README's two commands stay the ones that CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bash_blocks() -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    test_cmd = bash_blocks()[1]
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert test_cmd in ci_lines


def test_ci_runs_it_in_a_fresh_virtual_environment() -> None:
    """Nothing installed by hand can hide a missing dependency: a new venv in a temporary folder, removed after."""
    text = (ROOT / ".ci" / "run").read_text()
    lines = text.splitlines()
    made = next(i for i, ln in enumerate(lines) if ln.startswith("python3 -m venv "))
    entered = next(i for i, ln in enumerate(lines) if ln.startswith("source ") and ln.endswith('/bin/activate"'))
    assert made < entered < lines.index(bash_blocks()[1])
    assert 'venv="$(mktemp -d' in text and "trap 'rm -rf \"$venv\"' EXIT" in text and "--no-cache-dir" not in text


def test_main_command_files_exist() -> None:
    main_cmd = bash_blocks()[0]
    assert "fulldit generate" in main_cmd
    for path in re.findall(r"(examples/\S+)", main_cmd):
        assert (ROOT / path).is_file(), path


def test_layout_maps_the_tree() -> None:
    """The README's layout block names every module and package of fulldit/, and every path it names exists."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Layout\n.*?```\n(.*?)```", text, re.S).group(1)
    named = {ln.split()[0] for ln in block.splitlines() if ln and not ln.startswith(" ")}
    for path in named:
        assert (ROOT / path.rstrip("/")).exists(), f"the layout names {path}, which is not in the tree"
    tree = {f"fulldit/{p.name}" + ("/" if p.is_dir() else "") for p in (ROOT / "fulldit").iterdir()}
    tree = {p for p in tree if not p.endswith(("__init__.py", "py.typed", "__pycache__/"))}
    assert not tree - named, f"not in the README's layout: {sorted(tree - named)}"
