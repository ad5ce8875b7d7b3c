"""Tiny random-weight causal LM and a character tokenizer (no downloads)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # tiny tensors: one thread avoids OpenMP stalls on a loaded machine


class CharTokenizer:
    """Bytes mod 60 + 4; id 0 is a special (BOS-like) token, 1 is padding."""

    all_special_ids = [0, 1]
    pad_token_id = 1
    bos_token_id = 0
    eos_token_id = None

    def __call__(self, text, add_special_tokens=False, verbose=False):
        return {"input_ids": [4 + (b % 60) for b in text.encode("utf-8")]}


@pytest.fixture(scope="session")
def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    from saekit.models import LoadedModel

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg).eval()
    return LoadedModel(model, CharTokenizer(), "tiny-llama", "causal_lm", "float32", 32, 2)


@pytest.fixture()
def corpus_file(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 3 + "\n"
    path = tmp_path / "corpus.txt"
    path.write_text(text * 1)
    return path
