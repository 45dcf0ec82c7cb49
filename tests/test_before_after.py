"""benchmarks/before_after.py: an older revision's src/elt, extracted under another package name, imports beside
`elt` in the same process, and absolute `elt` imports are rewritten on the way."""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import elt.config

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("before_after", ROOT / "benchmarks" / "before_after.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "HEAD"], capture_output=True)
    return proc.returncode == 0


def test_absolute_imports_are_rewritten():
    ba = _script()
    text = "from elt.config import X\nimport elt\n    from elt import nn\nimport eltx\nfrom .elt import y\n"
    new = ba.ABSOLUTE_IMPORT.sub(r"\1\2 pkg", text)
    assert new == "from pkg.config import X\nimport pkg\n    from pkg import nn\nimport eltx\nfrom .elt import y\n"
    assert ba.STRING_MODULE.search("import_module('elt.models.flow')")
    assert not ba.STRING_MODULE.search("f'-m elt.cli train'")


@pytest.mark.skipif(not _in_git_checkout(), reason="needs git and a git checkout")
def test_head_imports_beside_elt(tmp_path):
    ba, name = _script(), "elt_head_copy"
    ba.extract("HEAD", name, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        copy = importlib.import_module(f"{name}.config")
        importlib.import_module(f"{name}.train")
        assert Path(copy.__file__).is_relative_to(tmp_path)
        assert copy.load_config is not elt.config.load_config
        cfg = copy.load_config(ROOT / "configs" / "mnist_flow.yaml")
        assert type(cfg).__module__ == f"{name}.config" and cfg.model.dim == 256
    finally:
        sys.path.remove(str(tmp_path))
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]
