"""The linter, the type checker and the import contract, run as tests so that the README's one
test command (and so .ci/run) keeps them. Each tool is configured in pyproject.toml."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    # the venv's own copy first (installed by the `test` extra), then PATH
    found = BIN / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        pytest.fail(f"{name} is not installed; run: pip install -e '.[test]'")
    return on_path


def _run(*cmd: str) -> None:
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert res.returncode == 0, f"{' '.join(cmd)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"


def test_ruff():
    _run(_tool("ruff"), "check", "--no-cache", ".")


def test_mypy():
    _run(_tool("mypy"), "--cache-dir=/dev/null")


def test_import_contracts():
    _run(_tool("lint-imports"), "--no-cache")
