"""Precision "auto": bf16 only where the device multiplies bf16 natively; what ran is recorded, never "auto"."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
import yaml

from elt import precision
from elt.cli import main

CPU = torch.device("cpu")


@pytest.fixture
def units(monkeypatch):
    """units(True/False): pretend this CPU has (or lacks) bf16 matrix units."""
    def set_units(present: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: present)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return set_units


def _dtype_under(prec: str) -> torch.dtype:
    with precision.autocast(CPU, prec):
        return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype


@pytest.mark.parametrize("present, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_is_bf16_only_where_the_cpu_has_bf16_units(units, present, expected):
    units(present)
    assert precision.resolve_precision("auto", CPU) == expected
    assert _dtype_under("auto") == (torch.bfloat16 if present else torch.float32)


def test_amx_alone_counts_as_bf16_units(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert precision.resolve_precision("auto", CPU) == "bf16"


def test_explicit_bf16_is_kept_and_warns_only_where_it_is_emulated(units):
    units(False)
    with pytest.warns(UserWarning, match="slow emulation"):
        assert precision.resolve_precision("bf16", CPU) == "bf16"
    assert _dtype_under("bf16") == torch.bfloat16  # asked for: kept
    units(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.resolve_precision("bf16", CPU) == "bf16"
    assert precision.resolve_precision("fp32", CPU) == "fp32" and _dtype_under("fp32") == torch.float32


@pytest.mark.parametrize("present, expected", [(True, "bf16"), (False, "fp32")])
def test_a_run_and_its_samples_record_the_precision_that_ran(units, present, expected, tmp_path, tiny_cfg_dict,
                                                             capsys):
    units(present)
    cfg = tiny_cfg_dict()
    cfg["train"]["precision"] = "auto"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", str(cfg_path), "train.steps=2", "--out", str(run), "--no-progress"]) == 0
    assert json.loads((run / "summary.json").read_text())["precision"] == expected
    out = tmp_path / "s.npz"
    assert main(["sample", str(run), "--out", str(out), "--per-class", "1", "--steps", "1"]) == 0  # default auto
    assert json.loads(out.with_suffix(".json").read_text())["precision"] == expected
    capsys.readouterr()


def test_the_cli_prints_the_emulated_bf16_warning_as_one_line(units, tmp_path, tiny_cfg_dict, capsys):
    units(False)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg_dict()))
    assert main(["train", str(cfg_path), "train.steps=1", "train.precision=bf16", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "bf16" in line]
    assert len(err) == 1 and err[0].startswith("elt: warning: bf16 on this cpu runs through a slow emulation"), err
