"""`saekit info PATH [--verify]` describes every format saekit reads, and verifies native folders."""

from __future__ import annotations

import json

import torch

from saekit.cli import main as cli
from saekit.sae import SAEConfig, build

from .test_reny import linear_tensors, write_reny
from .test_single_files import openai_state


def _info(capsys, *args) -> dict:
    assert cli(["info", *map(str, args)]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_for_native_foreign_and_row_dependent_saes(tmp_path, capsys):
    build(SAEConfig(d_in=8, d_sae=32, arch="jumprelu")).save(tmp_path / "n")
    info = _info(capsys, tmp_path / "n")
    assert (info["format"], info["arch"], info["d_in"], info["d_sae"], info["k"]) == (
        "saekit",
        "jumprelu",
        8,
        32,
        None,
    )
    write_reny(tmp_path / "cc3m-text-topk-lr-3e-4-k-4-expansion-4", linear_tensors(), k=4)
    info = _info(capsys, tmp_path / "cc3m-text-topk-lr-3e-4-k-4-expansion-4")
    assert (info["format"], info["arch"], info["k"]) == ("reny", "topk", 4)
    assert info["provenance"]["tower"] == "text"
    torch.save(openai_state(), tmp_path / "oa.pt")
    info = _info(capsys, tmp_path / "oa.pt")
    assert (info["format"], info["normalization"], info["k"]) == ("openai", "layer_norm", 4)


def test_verify_catches_what_open_skips(tmp_path, capsys, monkeypatch):
    from saekit.sae import integrity

    folder = build(SAEConfig(d_in=8, d_sae=32, arch="relu")).save(tmp_path / "n")
    assert _info(capsys, folder, "--verify")["verify"]["sha256_checked"] is True
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # a mantissa bit: finite, so only the hash can tell
    path.write_bytes(bytes(data))
    monkeypatch.setattr(integrity, "HASH_ON_OPEN_BYTES", 0)  # as for a multi-GB file: open does not hash
    assert cli(["info", str(folder)]) == 0
    capsys.readouterr()
    assert cli(["info", str(folder), "--verify"]) == 1
    assert "sha256" in capsys.readouterr().err


def test_store_info_and_unknown_path(tmp_path, capsys):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "manifest.json").write_text(json.dumps({"d": 8, "n_rows": 10, "shards": [1, 2]}))
    info = _info(capsys, tmp_path / "store")
    assert info["kind"] == "activation_store" and info["n_rows"] == 10 and "shards" not in info
    (tmp_path / "empty").mkdir()
    assert cli(["info", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "cannot tell which SAE format" in err and "manifest.json" in err


def test_store_verify_uses_the_store_layer_when_present(tmp_path, capsys, monkeypatch):
    import saekit.data.store as store

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "manifest.json").write_text(json.dumps({"d": 8}))
    monkeypatch.setattr(store, "verify_store", lambda path: {"shards_checked": 3}, raising=False)
    assert _info(capsys, tmp_path / "s", "--verify")["verify"] == {"shards_checked": 3}


def test_store_verify_without_the_store_function(tmp_path, capsys, monkeypatch):
    import saekit.data.store as store

    monkeypatch.delattr(store, "verify_store", raising=False)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "manifest.json").write_text(json.dumps({"d": 8}))
    assert "not available" in _info(capsys, tmp_path / "s", "--verify")["verify"]
