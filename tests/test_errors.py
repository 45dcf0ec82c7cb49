"""One EltError base: every project error is one, keeps its builtin base and its old import path, and `elt`
turns each into one `elt: error:` line with its exit code."""
from __future__ import annotations

import pytest

from elt import errors


@pytest.mark.parametrize("module,name,builtin", [
    ("elt.config", "ConfigError", ValueError),
    ("elt.tokenizers.pretrained", "TokenizerError", ValueError),
    ("elt.checkpoint", "CheckpointError", RuntimeError),
    ("elt.data", "DataError", RuntimeError),
    ("elt.train", "TrainingError", RuntimeError),
    ("elt.bench.peer", "PeerUnavailable", RuntimeError),
])
def test_errors_share_one_base_and_keep_their_homes(module, name, builtin):
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name)
    assert issubclass(cls, errors.EltError) and issubclass(cls, builtin)


@pytest.mark.parametrize("error,code", [(errors.TrainingError, 1), (errors.DataError, 2),
                                        (errors.TokenizerError, 2)])
def test_main_reports_any_elt_error_in_one_line(error, code, monkeypatch, capsys):
    from elt.cli import data, main

    def fail(args):
        raise error("something is wrong: do this")

    monkeypatch.setattr(data, "run", fail)
    assert main(["data", "digits"]) == code
    assert capsys.readouterr().err == "elt: error: something is wrong: do this\n"
