"""benchmarks/gpu.py stays runnable without a GPU: the one-line exit, and its CPU smoke mode's table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


def _module():
    spec = importlib.util.spec_from_file_location("saekit_gpu_benchmark", PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_cleanly(capsys):
    assert _module().main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA GPU" in out[0]


def test_cpu_smoke_table_has_every_training_row(capsys, tmp_path):
    mod = _module()
    assert mod.main(["--device", "cpu", "--smoke", "--skip-harvest", "--json", str(tmp_path / "r.json")]) == 0
    import json

    rows = json.loads((tmp_path / "r.json").read_text())
    timed = [r for r in rows if r["method"] in ("saekit", "dense")]
    assert len(timed) == 2 * 2 * 2  # 2 shapes x {fp32, bf16} x {saekit, dense}
    assert all(r["tokens_per_s"] > 0 and not r["note"] for r in timed)
    saekit_rows = [r for r in timed if r["method"] == "saekit"]
    assert all("x dense" in r["ratios"] for r in saekit_rows)
    assert "x dense" in capsys.readouterr().out
