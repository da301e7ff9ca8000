"""The typed stub python/heidi_cpp.pyi states the compiled module's API (mypy.stubtest):
every name, every property and method, and the signatures Python can see."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "python" / "heidi_cpp.pyi"
# Stubtest's exceptions for heidi_cpp (the wheel's stub is checked with them too, in
# tests/test_wheel.py).
STUBTEST_ALLOWLIST = Path(__file__).parent / "data" / "heidi_cpp_stubtest_allowlist.txt"


@pytest.mark.native
def test_stub_matches_the_compiled_module(native, tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (the test extra has it: scripts/setup.sh --test)")
    # The module this process imports, the stub from the source tree; mypy's cache goes to
    # the scratch directory.
    path = [os.path.abspath(entry) for entry in sys.path if entry]
    env = {**os.environ, "MYPYPATH": str(STUB.parent), "PYTHONPATH": os.pathsep.join(path)}
    argv = [sys.executable, "-m", "mypy.stubtest", "heidi_cpp", "--allowlist",
            str(STUBTEST_ALLOWLIST)]
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_python_backend_has_every_name_of_the_stub(pure):
    """The pure-Python backend offers the same module-level names (Clock, the native
    clocks' common base, is the stub's own)."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    names = {node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))
             and not node.name.startswith("_")}
    assert sorted(name for name in names - {"Clock"} if not hasattr(pure.module, name)) == []
