"""The in-memory store copy serves exactly the store's batches (order, offsets, drop_last), and a training
run on it equals one reading the shard files."""

from __future__ import annotations

import torch
from train_helpers import correlated_rows, write_store

from saekit.data.store import ActivationStore
from saekit.train import TrainConfig, Trainer
from saekit.train.cached import CachedStore, maybe_cache


def test_cached_batches_equal_the_store_batches(tmp_path):
    store = ActivationStore.open(write_store(tmp_path / "s", correlated_rows(1000, 8, seed=3).bfloat16()))
    cached = CachedStore(store)
    assert len(cached) == len(store) == 1000 and cached.d == store.d == 8
    for kw in (
        dict(shuffle=True, seed=4, start_row=0, drop_last=True),
        dict(shuffle=True, seed=9, start_row=320, drop_last=False),  # resumed mid-epoch, short tail
        dict(shuffle=False, seed=0, start_row=7, drop_last=False),
    ):
        a = list(store.iter_batches(128, **kw))
        b = list(cached.iter_batches(128, **kw))
        assert len(a) == len(b) and len(a) > 0
        for x, y in zip(a, b):
            assert x.dtype == y.dtype == torch.float32 and torch.equal(x, y)


def test_budget_decides_and_training_is_unchanged(tmp_path):
    store = ActivationStore.open(write_store(tmp_path / "s", correlated_rows(768, 8, seed=1)))
    assert maybe_cache(store, 0) is store  # 0 = never
    assert maybe_cache(store, 1) is not store  # 768 x 8 floats fit in 1 MB
    cfg = dict(arch="topk", k=4, expansion=4, batch_size=128, total_tokens=128 * 8, quiet=True, seed=2)
    runs = {}
    for mb in (0, 64):
        tr = Trainer(TrainConfig.flat(cache_mb=mb, **cfg), store, out=tmp_path / f"r{mb}")
        assert isinstance(tr.source, CachedStore) == (mb > 0)
        runs[mb] = tr.run().sae.state_dict()
    for name, t in runs[0].items():
        assert torch.equal(t, runs[64][name]), name
