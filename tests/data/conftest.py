"""Shared fixtures: a small .txt corpus (no downloads); the toy tokenizer is tests/conftest.py's."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture()
def text_corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(6):
        (folder / f"doc{i}.txt").write_text(
            f"Document {i}. " + "the quick brown fox jumps over the lazy dog " * (3 + i)
        )
    return folder
