"""harvest() / `saekit harvest` on a tiny random Llama (plus one real SmolLM2 run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saekit.data import ActivationStore, StoreWriter
from saekit.data.harvest import LMHarvestConfig, harvest

torch.set_num_threads(2)


@pytest.fixture()
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(5):
        (folder / f"d{i}.txt").write_text(
            f"Doc {i}: " + "the quick brown fox jumps over the lazy dog. " * (2 + i)
        )
    return str(folder)


def _cfg(out, corpus, **kw):
    base = dict(
        model="tiny",
        hook_point="model.layers.1",
        corpus=corpus,
        tokens=300,
        out=Path(out),
        context_len=32,
        batch_size=3,
        shard_rows=64,
        quiet=True,
        dtype="float32",
    )
    base.update(kw)
    return LMHarvestConfig(**base)


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def test_rows_equal_hidden_states_at_their_positions(tmp_path, corpus, tiny_lm):
    # layers.0, not the last layer: transformers applies the final norm to the last hidden state
    st = harvest(_cfg(tmp_path / "a", corpus, hook_point="model.layers.0"), loaded=tiny_lm)
    assert len(st) == 300 and st.manifest["model_dtype"] == "float32" and st.manifest["complete"]
    acts, meta = next(st.iter_rows_with_meta(300))
    assert (meta["position"] % 32 != 0).all(), "context position 0 is excluded by default"
    for i in range(0, 300, 37):
        d, p = int(meta["doc_id"][i]), int(meta["position"][i])
        start = p - p % 32
        ctx = st.tokens(d, start, start + 32)
        assert int(ctx[p - start]) == int(meta["token_id"][i])
        with torch.no_grad():
            hs = tiny_lm.model(ctx[None], output_hidden_states=True).hidden_states[1][0]
        torch.testing.assert_close(acts[i], hs[p - start], rtol=1e-5, atol=1e-5)


def test_early_stop_gives_identical_store(tmp_path, corpus, tiny_lm):
    harvest(_cfg(tmp_path / "early", corpus), loaded=tiny_lm)
    harvest(_cfg(tmp_path / "full", corpus, stop_early=False), loaded=tiny_lm)
    a, b = ActivationStore.open(tmp_path / "early"), ActivationStore.open(tmp_path / "full")
    torch.testing.assert_close(
        next(a.iter_batches(300, shuffle=False)), next(b.iter_batches(300, shuffle=False)), rtol=0, atol=0
    )


def test_kill_and_resume_identical(tmp_path, corpus, tiny_lm, monkeypatch):
    harvest(_cfg(tmp_path / "ref", corpus), loaded=tiny_lm)
    original, calls = StoreWriter._write_shard, {"n": 0}

    def dying(self, tensors):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        original(self, tensors)

    monkeypatch.setattr(StoreWriter, "_write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        harvest(_cfg(tmp_path / "run", corpus), loaded=tiny_lm)
    monkeypatch.setattr(StoreWriter, "_write_shard", original)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["count"] == 128
    harvest(_cfg(tmp_path / "run", corpus), loaded=tiny_lm)
    assert _files(tmp_path / "run") == _files(tmp_path / "ref")
    # a complete store is reused, a different request refused
    assert len(harvest(_cfg(tmp_path / "run", corpus), loaded=tiny_lm)) == 300
    from saekit.errors import StoreError

    with pytest.raises(StoreError, match="different activation store"):
        harvest(_cfg(tmp_path / "run", corpus, hook_point="model.layers.0"), loaded=tiny_lm)


def test_exclusions_configurable(tmp_path, corpus, tiny_lm):
    st = harvest(
        _cfg(tmp_path / "x", corpus, exclude_first=0, prepend_bos=True, exclude_special=False), loaded=tiny_lm
    )
    bos = tiny_lm.tokenizer.bos_token_id
    _, meta = next(st.iter_rows_with_meta(300))
    assert (meta["token_id"] == bos).any() and (meta["position"] == -1).any()
    st2 = harvest(_cfg(tmp_path / "y", corpus, exclude_first=0, prepend_bos=True), loaded=tiny_lm)
    _, meta2 = next(st2.iter_rows_with_meta(300))
    assert not (meta2["token_id"] == bos).any() and (meta2["position"] % 31 == 0).any()


def test_cli_writes_store(tmp_path, corpus, tiny_lm, monkeypatch):
    import saekit.models
    from saekit.commands.harvest import main

    monkeypatch.setattr(saekit.models, "load_model", lambda *a, **k: tiny_lm)
    rc = main(
        [
            "--model",
            "tiny",
            "--hook-point",
            "model.layers.0",
            "--corpus",
            corpus,
            "--tokens",
            "100",
            "--out",
            str(tmp_path / "cli"),
            "--context-len",
            "32",
            "--quiet",
            "--store-dtype",
            "bfloat16",
        ]
    )
    st = ActivationStore.open(tmp_path / "cli")
    assert (
        rc == 0
        and len(st) == 100
        and st.manifest["dtype"] == "bfloat16"
        and st.manifest["hook_point"] == "model.layers.0"
    )


@pytest.mark.realmodel
def test_smollm2_harvest_matches_hidden_states(tmp_path):
    from saekit.hooks import capture
    from saekit.models import load_model

    lm = load_model("smollm2", dtype="float32", quiet=True)
    st = harvest(
        LMHarvestConfig(
            hook_point="model.layers.15",
            corpus="shakespeare",
            tokens=200,
            out=tmp_path / "s",
            context_len=48,
            batch_size=2,
            dtype="float32",
            quiet=True,
        ),
        loaded=lm,
    )
    assert st.d == 576 and st.manifest["model"] == "smollm2" and st.manifest["model_dtype"] == "float32"
    acts, meta = next(st.iter_rows_with_meta(200))
    d, p = int(meta["doc_id"][5]), int(meta["position"][5])
    start = p - p % 48
    ctx = st.tokens(d, start, start + 48)[None]
    with torch.no_grad():
        ref = lm.model(ctx, output_hidden_states=True).hidden_states[16][0]
        with capture(lm.model, "model.layers.15", stop_after_last=True) as cap:
            lm.model(ctx)
    torch.testing.assert_close(acts[5], ref[p - start], rtol=1e-4, atol=1e-3)
    norms = ref.norm(dim=-1)
    torch.testing.assert_close(cap.activations["model.layers.15"][0], ref, rtol=0, atol=0)
    # the attention sink at context position 0 dwarfs the rest and is kept out of the store
    assert norms[0] > 50 * norms[1:].median()
    assert acts.norm(dim=-1).max() < 20 * acts.norm(dim=-1).median()


def test_many_hook_points_in_one_pass_equal_single_hook_harvests(tmp_path, corpus, tiny_lm, monkeypatch):
    """`--hook a,b`: one store per hook point, each identical to a harvest of that hook alone, from
    one forward pass per batch (stopped after the deepest hooked layer) instead of one per hook."""
    import saekit.hooks

    real_capture, calls = saekit.hooks.capture, []

    def counting(model, hook_points, **kw):
        calls.append(([str(h) for h in hook_points], kw.get("stop_after_last")))
        return real_capture(model, hook_points, **kw)

    monkeypatch.setattr(saekit.hooks, "capture", counting)
    both = "model.layers.0,model.layers.1"
    stores = harvest(_cfg(tmp_path / "multi", corpus, hook_point=both), loaded=tiny_lm)
    multi_calls, calls[:] = list(calls), []
    singles = [
        harvest(_cfg(tmp_path / h, corpus, hook_point=h), loaded=tiny_lm)
        for h in ("model.layers.0", "model.layers.1")
    ]
    single_calls = list(calls)
    assert [s.folder for s in stores] == [
        tmp_path / "multi" / "model.layers.0",
        tmp_path / "multi" / "model.layers.1",
    ]
    assert all(h == ["model.layers.0", "model.layers.1"] and stop for h, stop in multi_calls)
    assert 2 * len(multi_calls) == len(single_calls)  # one pass per batch for both hook points
    for store, single in zip(stores, singles):
        a, ma = next(store.iter_rows_with_meta(1000))
        b, mb = next(single.iter_rows_with_meta(1000))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert all(torch.equal(ma[k], mb[k]) for k in mb) and len(store) == 300
        assert store.manifest["hook_point"] == single.manifest["hook_point"]


def test_repair_rewrites_a_damaged_shard_to_the_original_bytes(tmp_path, corpus, tiny_lm):
    """A NaN poked into shard 2 in place: reading refuses it; `--repair` rewrites shards 2.. identically."""
    import struct

    import numpy as np

    from saekit.errors import StoreError

    harvest(_cfg(tmp_path / "ref", corpus), loaded=tiny_lm)
    harvest(_cfg(tmp_path / "run", corpus), loaded=tiny_lm)
    shard = tmp_path / "run" / "shard_00002.safetensors"
    raw = shard.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    begin, _ = json.loads(raw[8 : 8 + n])["acts"]["data_offsets"]
    arr = np.memmap(shard, dtype=np.float32, mode="r+", offset=8 + n + begin, shape=(64, 32))
    arr[7] = np.nan
    arr.flush()
    with pytest.raises(StoreError, match=r"shard_00002.*local row 7 \(store row 135\).*--repair"):
        ActivationStore.open(tmp_path / "run").sample(300)
    harvest(_cfg(tmp_path / "run", corpus, repair=True), loaded=tiny_lm)
    assert _files(tmp_path / "run") == _files(tmp_path / "ref")


def test_device_flag_is_resolved_once_and_refuses_a_missing_gpu(tmp_path, corpus, tiny_lm):
    from saekit.device import DeviceError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        harvest(_cfg(tmp_path / "g", corpus, device="cuda"), loaded=tiny_lm)
    st = harvest(_cfg(tmp_path / "c", corpus, device="cpu"), loaded=tiny_lm)
    assert len(st) == 300


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_harvest_equals_cpu_harvest(tmp_path, corpus, tiny_lm):
    """Same rows on the GPU (pinned non-blocking copies, writes one batch late) as on the CPU."""
    cpu = harvest(_cfg(tmp_path / "cpu", corpus, device="cpu"), loaded=tiny_lm)
    gpu = harvest(_cfg(tmp_path / "gpu", corpus, device="cuda"), loaded=tiny_lm)
    tiny_lm.model.to("cpu")
    a, ma = next(cpu.iter_rows_with_meta(1000))
    b, mb = next(gpu.iter_rows_with_meta(1000))
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
