"""Matryoshka training from the CLI: the comma list, the saved sizes, the nested loss, the export refusal."""

from __future__ import annotations

import pytest
import torch
from train_helpers import correlated_rows, write_store

import saekit
from saekit.commands.train import split_comma_lists
from saekit.errors import SAEConfigError
from saekit.sae import SAEConfig


def test_comma_lists_become_the_parser_s_space_separated_lists():
    got = split_comma_lists(["--matryoshka", "8,16,32", "--k", "4"])
    assert got == ["--matryoshka", "8", "16", "32", "--k", "4"]
    assert split_comma_lists(["--matryoshka=8,16"]) == ["--matryoshka", "8", "16"]
    assert split_comma_lists(["--matryoshka", "8", "16"]) == ["--matryoshka", "8", "16"]
    assert split_comma_lists(["--acts", "a,b", "--matryoshka", "8"]) == ["--acts", "a,b", "--matryoshka", "8"]


def test_bad_sizes_are_refused_with_the_fix():
    for bad in ((16, 8), (8, 8), (0, 8), (8, 99)):
        with pytest.raises(SAEConfigError, match="matryoshka"):
            SAEConfig(d_in=4, d_sae=32, arch="matryoshka_batchtopk", k=2, matryoshka=bad)


def test_cli_trains_loads_and_refuses_export(tmp_path):
    from saekit.cli import main

    store = write_store(tmp_path / "acts", correlated_rows(512, 8, seed=0))
    out = tmp_path / "sae"
    argv = ["train", "--acts", str(store), "--out", str(out), "--arch", "matryoshka_batchtopk", "--k", "2",
            "--expansion", "4", "--matryoshka", "8,16", "--batch-size", "64", "--quiet", "--device", "cpu",
            "--init-sample", "128"]  # fmt: skip
    assert main(argv) == 0
    sae = saekit.load(out)
    assert sae.arch == "matryoshka_batchtopk" and sae.cfg.matryoshka == (8, 16)
    assert sae.prefix_sizes() == [8, 16, 32] and float(sae.threshold) > 0
    x = correlated_rows(64, 8, seed=1)
    lat = sae.encode(x)  # inference: BatchTopK's threshold, batch-independent
    assert torch.equal(lat[:5], sae.encode(x[:5]))
    assert main(["export", str(out), "--to", "sparsify", str(tmp_path / "exp")]) != 0  # refused, clearly
