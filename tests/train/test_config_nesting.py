"""TrainConfig nests SAESpec (generated from SAEConfig): every SAE field is a flag with the old flat name,
the trained SAE gets the values, pre-nesting checkpoints still resume, and `--acts A,B` trains two SAEs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import tyro
from train_helpers import correlated_rows, write_store

from saekit.errors import CheckpointError
from saekit.sae.config import SAEConfig
from saekit.sae.io import load_sae
from saekit.train import TensorSource, TrainConfig, Trainer, open_source
from saekit.train.sae_spec import IMPORT_ONLY, RUN_FIELDS, SAESpec, field_docstrings
from saekit.train.trainer import CHECKPOINT_DIR

torch.set_num_threads(1)


def test_spec_has_every_sae_field_but_the_sizes_with_its_help_text():
    sae_fields = {f.name for f in dataclasses.fields(SAEConfig)} - set(RUN_FIELDS) - set(IMPORT_ONLY)
    assert {f.name for f in dataclasses.fields(SAESpec)} == sae_fields
    docs = field_docstrings(SAEConfig)
    assert "JumpReLU" in docs["jumprelu_bandwidth"] and all(docs[n] for n in sae_fields)


def test_formerly_missing_sae_flags_parse_and_reach_the_trained_sae(tmp_path):
    argv = ["--arch", "jumprelu", "--no-init-tied", "--init-orthonormal", "--jumprelu-bandwidth", "0.05"]
    argv += [
        "--expansion",
        "2",
        "--batch-size",
        "64",
        "--total-tokens",
        "128",
        "--quiet",
        "--init-sample",
        "64",
    ]
    cfg = tyro.cli(TrainConfig, args=argv)
    assert (cfg.sae.arch, cfg.sae.init_tied, cfg.sae.init_orthonormal) == ("jumprelu", False, True)
    Trainer(cfg, TensorSource(correlated_rows(256, 8, seed=0)), out=tmp_path).run()
    saved = load_sae(tmp_path).cfg
    assert (saved.init_tied, saved.init_orthonormal, saved.jumprelu_bandwidth) == (False, True, 0.05)
    assert saved.k is None  # k means nothing to jumprelu and is not recorded as if it did


def test_flat_and_nested_dicts_round_trip():
    cfg = TrainConfig.flat(arch="relu", sparsity_coefficient=2.0, batch_size=32, device="cpu")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg == TrainConfig.from_dict(cfg.flat_dict())
    assert cfg.replace(k=7).sae.k == 7 and cfg.replace(seed=4).seed == 4
    with pytest.raises(Exception, match="unknown train config field"):
        TrainConfig.flat(expanson=4)


OLD_FLAT = dict(  # what a checkpoint written before the nesting holds as train_config
    acts="", out="sae", arch="topk", k=4, expansion=4, d_sae=None, dtype="float32", autocast="none",
    batch_size=128, total_tokens=128 * 10, lr=None, beta1=0.9, beta2=0.999, eps=1e-8, lr_warmup_steps=3,
    lr_decay="linear", lr_decay_start=0.8, sparsity_coefficient=None, sparsity_warmup_frac=0.05, aux_k=None,
    aux_k_coefficient=1 / 32, dead_tokens=256, resample_every=None, normalization="expected_norm",
    b_dec_init="geometric_median", init_sample=512, normalize_decoder=True, seed=3, log_every=3,
    checkpoint_every=4, num_threads=None, tensorboard=False, wandb=False, quiet=True,
)  # fmt: skip


def test_pre_nesting_checkpoint_resumes_and_still_refuses_changes(tmp_path):
    src = TensorSource(correlated_rows(2048, 16, seed=1))
    cfg = TrainConfig.from_dict(OLD_FLAT)
    ref = Trainer(cfg, src, out=tmp_path / "ref").run()
    Trainer(cfg, src, out=tmp_path / "run").run(stop_after_steps=6)
    state_file = tmp_path / "run" / CHECKPOINT_DIR / "state.json"
    state = json.loads(state_file.read_text())
    state["train_config"] = OLD_FLAT  # rewrite it as the old trainer wrote it
    state_file.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="aux_k_coefficient: checkpoint=0.03125 now=0.5"):
        Trainer(cfg.replace(aux_k_coefficient=0.5), src, out=tmp_path / "run").run()
    resumed = Trainer(cfg.replace(device="cpu", prefetch=0), src, out=tmp_path / "run").run()
    assert torch.equal(resumed.sae.W_enc, ref.sae.W_enc)


def test_cli_trains_one_sae_per_store(tmp_path, capsys):
    from saekit.cli import main

    stores = [write_store(tmp_path / n, correlated_rows(512, 8, seed=i)) for i, n in enumerate(["l3", "l7"])]
    argv = ["train", "--acts", ",".join(map(str, stores)), "--out", str(tmp_path / "saes"), "--k", "2"]
    argv += ["--expansion", "2", "--batch-size", "64", "--quiet", "--init-sample", "128", "--device", "cpu"]
    assert main(argv) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == 2
    for store in stores:
        sae = load_sae(tmp_path / "saes" / store.name)
        assert sae.cfg.d_in == 8 and sae.cfg.provenance.tokens_trained == 3 * 512  # default: 3 passes
        ref_cfg = TrainConfig.flat(k=2, expansion=2, batch_size=64, quiet=True, init_sample=128)
        ref = Trainer(ref_cfg, open_source(store), out=tmp_path / "ref" / store.name).run()
        assert torch.equal(sae.W_dec, ref.sae.W_dec)
