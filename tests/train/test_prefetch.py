"""Background prefetch: the same batches in the same order, errors re-raised where they happened, and a
clean shutdown (no producer thread left) when the consumer fails or is interrupted."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from train_helpers import correlated_rows, write_store

from saekit.train import TensorSource, TrainConfig, Trainer, open_source
from saekit.train.prefetch import Prefetcher

torch.set_num_threads(1)


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "saekit-prefetch" and t.is_alive()]


def _cfg(**kw):
    base = dict(arch="topk", k=3, expansion=4, batch_size=64, total_tokens=64 * 20, quiet=True, seed=5)
    base.update(init_sample=256, lr_warmup_steps=2, checkpoint_every=6, log_every=4, dead_tokens=128)
    base.update(kw)
    return TrainConfig.flat(**base)


def test_store_batches_identical_with_and_without_prefetch(tmp_path):
    """Across epochs and from a resume offset, over a real multi-shard store."""
    store = open_source(write_store(tmp_path / "s", correlated_rows(700, 8, seed=0), shard_rows=150))
    plain = Trainer(_cfg(prefetch=0), store, out=tmp_path / "a")
    ahead = Trainer(_cfg(prefetch=3), store, out=tmp_path / "b")
    for start in (0, 7):  # 10 steps per epoch: 20 steps cross an epoch boundary
        with plain._batch_stream(start) as a, ahead._batch_stream(start) as b:
            xs, ys = list(a), list(b)
        assert len(xs) == len(ys) == 20 - start
        assert all(torch.equal(x, y) for x, y in zip(xs, ys))
    assert not _prefetch_threads()


def test_training_with_prefetch_is_bit_identical(tmp_path):
    src = TensorSource(correlated_rows(640, 8, seed=1))
    a = Trainer(_cfg(prefetch=0), src, out=tmp_path / "a").run()
    b = Trainer(_cfg(prefetch=2), src, out=tmp_path / "b").run()
    for name, t in a.sae.state_dict().items():
        assert torch.equal(t, b.sae.state_dict()[name]), name


def test_source_error_is_raised_in_the_consumer_after_earlier_items():
    def source():
        yield from range(3)
        raise OSError("shard 4 unreadable")

    got = []
    with pytest.raises(OSError, match="shard 4 unreadable"), Prefetcher(source(), depth=2) as it:
        for item in it:
            got.append(item)
    assert got == [0, 1, 2]
    assert not _prefetch_threads()


def test_consumer_error_stops_the_producer_promptly():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    with pytest.raises(KeyboardInterrupt), Prefetcher(endless(), depth=2) as it:
        next(it)
        time.sleep(0.2)  # let the producer fill the queue and block on it
        raise KeyboardInterrupt
    assert not _prefetch_threads()
    assert len(produced) <= 5  # the queue's depth plus the items in flight, not an unbounded read-ahead


def test_interrupted_training_leaves_no_thread_and_resumes(tmp_path):
    src = TensorSource(correlated_rows(640, 8, seed=2))

    def interrupt(step):
        if step == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(_cfg(), src, out=tmp_path / "run").run(on_step=interrupt)
    assert not _prefetch_threads()
    resumed = Trainer(_cfg(), src, out=tmp_path / "run").run()  # from the step-6 checkpoint
    ref = Trainer(_cfg(), src, out=tmp_path / "ref").run()
    assert torch.equal(resumed.sae.W_enc, ref.sae.W_enc)
