"""Fixtures of the bench tests: a corpus file and hand-built SAEs; the tiny random Llama `tiny_lm` lives in
tests/conftest.py."""

from __future__ import annotations

import pytest
import torch

from saekit.sae import SAEConfig, build

torch.set_num_threads(1)  # tiny tensors: one thread avoids OpenMP stalls on a loaded machine


@pytest.fixture()
def corpus_file(tmp_path):
    """Twelve short documents (one per line of a .jsonl), so the core metrics resample documents."""
    import json

    words = "the quick brown fox jumps over a lazy dog while seven old owls sing softly".split()
    lines = []
    for i in range(12):
        text = " ".join(words[(i + j) % len(words)] for j in range(40))
        lines.append(json.dumps({"text": f"Document {i}. {text}."}))
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def relu_sae(W_enc_DF: torch.Tensor, W_dec_FD: torch.Tensor, b_enc_F: torch.Tensor | None = None):
    """A ReLU SAE with exactly these weights (no biases unless given, input scale 1)."""
    d, f = W_enc_DF.shape
    sae = build(SAEConfig(d_in=d, d_sae=f, arch="relu", normalization="none"), seed=0).eval()
    with torch.no_grad():
        sae.W_enc.copy_(W_enc_DF)
        sae.W_dec.copy_(W_dec_FD)
        sae.b_enc.copy_(torch.zeros(f) if b_enc_F is None else b_enc_F)
        sae.b_dec.zero_()
        sae.input_scale.fill_(1.0)
    return sae
