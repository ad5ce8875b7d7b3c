"""Shared fixtures: a toy character tokenizer and a small .txt corpus (no downloads)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


class CharTokenizer:
    """A deterministic toy tokenizer (one token per character) so data tests need no downloads."""

    bos_token_id = 1
    eos_token_id = 2
    pad_token_id = 0
    all_special_ids = [0, 1, 2]

    def __call__(self, text, add_special_tokens=False, verbose=False):
        return {"input_ids": [3 + (ord(c) % 61) for c in text]}

    def convert_ids_to_tokens(self, i):
        return chr(i)


@pytest.fixture(scope="session")
def char_tokenizer():
    return CharTokenizer()


@pytest.fixture()
def text_corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(6):
        (folder / f"doc{i}.txt").write_text(
            f"Document {i}. " + "the quick brown fox jumps over the lazy dog " * (3 + i)
        )
    return folder
