"""Corpora, tokenisation into contexts, and the sharded activation store."""

from saekit.data.corpus import Document, load_corpus
from saekit.data.store import ActivationStore, verify_store
from saekit.data.store_writer import StoreWriter
from saekit.data.tokenize import TokenBatch, keep_mask, tokenize_corpus

__all__ = [
    "ActivationStore",
    "Document",
    "StoreWriter",
    "TokenBatch",
    "keep_mask",
    "load_corpus",
    "tokenize_corpus",
    "verify_store",
]
