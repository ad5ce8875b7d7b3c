"""A corpus file for the eval tests; the tiny random Llama `tiny_lm` lives in tests/conftest.py."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # tiny tensors: one thread avoids OpenMP stalls on a loaded machine


@pytest.fixture()
def corpus_file(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 3 + "\n"
    path = tmp_path / "corpus.txt"
    path.write_text(text * 1)
    return path
