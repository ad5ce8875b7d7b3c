"""Format detection and `load_any` dispatch: right loader per layout, clear errors otherwise."""

from __future__ import annotations

import json

import pytest
import torch

from saekit.errors import SAEFormatError
from saekit.formats import detect_format, known_formats, load_any
from saekit.sae import SAEConfig, build

from .conftest import acts, assert_close
from .test_saelens import base_tensors, write_saelens
from .test_sparsify import sparsify_tensors, write_sparsify


def test_each_layout_detected(tmp_path):
    write_saelens(tmp_path / "sl", base_tensors(), architecture="standard")
    write_sparsify(tmp_path / "sp", sparsify_tensors())
    (tmp_path / "dl").mkdir()
    torch.save({"x": torch.zeros(1)}, tmp_path / "dl" / "ae.pt")
    build(SAEConfig(d_in=8, d_sae=16, arch="relu")).save(tmp_path / "native")
    assert detect_format(tmp_path / "sl")[0] == "saelens"
    assert detect_format(tmp_path / "sl" / "sae_weights.safetensors") == ("saelens", tmp_path / "sl")
    assert detect_format(tmp_path / "sp")[0] == "sparsify"
    assert detect_format(tmp_path / "dl")[0] == "dictionary_learning"
    assert detect_format(tmp_path / "dl" / "ae.pt") == ("dictionary_learning", tmp_path / "dl" / "ae.pt")
    assert detect_format(tmp_path / "native")[0] == "saekit"


def test_native_folder_loads_through_load_any(tmp_path):
    sae = build(SAEConfig(d_in=8, d_sae=16, arch="topk", k=3), seed=1)
    sae.save(tmp_path / "n")
    again = load_any(tmp_path / "n")
    x = acts()
    assert_close(again.reconstruct(x), sae.reconstruct(x), "native round trip")


def test_unknown_layout_lists_formats_and_files(tmp_path):
    folder = tmp_path / "mystery"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 8)
    (folder / "params.json").write_text(json.dumps({"d": 8}))
    with pytest.raises(SAEFormatError) as info:
        load_any(folder)
    msg = str(info.value)
    for name in known_formats():
        assert name in msg
    assert "sae_weights.safetensors" in msg and "ae.pt" in msg and "weights.bin" in msg


def test_missing_path_and_unknown_format_name(tmp_path):
    with pytest.raises(SAEFormatError, match="does not exist"):
        load_any(tmp_path / "nope")
    write_saelens(tmp_path / "sl", base_tensors(), architecture="standard")
    with pytest.raises(SAEFormatError, match="unknown SAE format 'mystery'.*saelens"):
        load_any(tmp_path / "sl", format="mystery")
    with pytest.raises(SAEFormatError, match="is a folder; this format is a single weights file"):
        load_any(tmp_path / "sl", format="openai")


def test_explicit_format_and_converted_sae_saves_natively(tmp_path):
    t = base_tensors(seed=3)
    write_saelens(tmp_path / "sl", t, architecture="topk", k=4)
    sae = load_any(tmp_path / "sl", format="saelens")
    sae.save(tmp_path / "native")
    again = load_any(tmp_path / "native")
    x = acts(seed=4)
    assert again.arch == "topk"
    assert_close(again.reconstruct(x), sae.reconstruct(x), "converted -> native round trip")


def test_corrupt_weights_named(tmp_path):
    folder = write_saelens(tmp_path / "sl", base_tensors(), architecture="standard")
    data = (folder / "sae_weights.safetensors").read_bytes()
    (folder / "sae_weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SAEFormatError, match="sae_weights.safetensors.*corrupt or truncated"):
        load_any(folder)


def test_options_checked_against_the_detected_format(tmp_path):
    write_sparsify(tmp_path / "sp", sparsify_tensors())
    with pytest.raises(
        SAEFormatError, match=r"'sparsify' format, which takes option\(s\) none; got \['scaling_factor'\]"
    ):
        load_any(tmp_path / "sp", scaling_factor=2.0)
    write_saelens(tmp_path / "sl", base_tensors(), architecture="standard")
    with pytest.raises(SAEFormatError, match="normalize_activations='none'"):
        load_any(tmp_path / "sl", scaling_factor=2.0)
