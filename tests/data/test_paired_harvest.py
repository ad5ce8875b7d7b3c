"""`saekit harvest --paired`: a module's input and output recorded in one pass into a paired store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saekit.data import ActivationStore
from saekit.data.harvest import LMHarvestConfig, harvest
from saekit.data.paired import PairedRows, split_pair
from saekit.errors import HookPointError, StoreError
from saekit.hooks import HookPoint

torch.set_num_threads(1)

MLP = "model.layers.0.mlp"


@pytest.fixture()
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(4):
        text = f"Doc {i}: " + "the quick brown fox jumps over the lazy dog. " * (2 + i)
        (folder / f"d{i}.txt").write_text(text)
    return str(folder)


def _cfg(out, corpus, **kw) -> LMHarvestConfig:
    base = dict(
        model="tiny", hook_point=MLP, paired=True, corpus=corpus, tokens=200, out=Path(out), context_len=32,
        batch_size=3, shard_rows=64, quiet=True, dtype="float32",
    )  # fmt: skip
    base.update(kw)
    return LMHarvestConfig(**base)


def test_paired_rows_equal_a_direct_forward_of_the_module(tmp_path, corpus, tiny_lm):
    st = harvest(_cfg(tmp_path / "p", corpus), loaded=tiny_lm)
    m = st.manifest
    assert st.paired and m["paired"] is True and st.d == 32 and st.d_out == 32
    assert (m["hook_point"], m["target_hook_point"]) == (f"{MLP}:in", MLP)
    assert len(st) == 200 and len(st.shards) == 4 and st.meta_fields() == ["doc_id", "position", "token_id"]
    rows = st.read_rows(range(200), ["acts", "target", "doc_id", "position"])
    mlp = tiny_lm.model.model.layers[0].mlp
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        mlp.register_forward_pre_hook(lambda mod, args: seen.__setitem__("in", args[0].detach())),
        mlp.register_forward_hook(lambda mod, args, out: seen.__setitem__("out", out.detach())),
    ]
    try:
        for i in range(0, 200, 23):
            d, p = int(rows["doc_id"][i]), int(rows["position"][i])
            start = p - p % 32
            with torch.no_grad():
                tiny_lm.model(st.tokens(d, start, start + 32)[None])
            torch.testing.assert_close(rows["acts"][i], seen["in"][0, p - start], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(rows["target"][i], seen["out"][0, p - start], rtol=1e-5, atol=1e-5)
            # and the output is that module's function of the input, row by row
            with torch.no_grad():
                direct = mlp(rows["acts"][i][None, None])[0, 0]
            torch.testing.assert_close(rows["target"][i], direct, rtol=1e-5, atol=1e-5)
    finally:
        for h in hooks:
            h.remove()
    # PairedRows serves [input | target] in the store's own order for a seed
    pr = PairedRows(st)
    first = next(pr.iter_batches(50, seed=3))
    x_only = next(st.iter_batches(50, seed=3))
    x, y = split_pair(first, st.d)
    assert torch.equal(x, x_only) and y.shape == (50, 32)
    assert st.verify()["rows"] == 200


def test_paired_harvest_resumes_byte_identical(tmp_path, corpus, tiny_lm, monkeypatch):
    harvest(_cfg(tmp_path / "ref", corpus), loaded=tiny_lm)
    from saekit.data.store_writer import StoreWriter

    original = StoreWriter._write_shard
    calls = {"n": 0}

    def dying(self, tensors):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return original(self, tensors)

    monkeypatch.setattr(StoreWriter, "_write_shard", dying)
    with pytest.raises(KeyboardInterrupt):
        harvest(_cfg(tmp_path / "run", corpus), loaded=tiny_lm)
    monkeypatch.setattr(StoreWriter, "_write_shard", original)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["count"] == 128
    harvest(_cfg(tmp_path / "run", corpus), loaded=tiny_lm)

    def files(folder):
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}

    assert files(tmp_path / "run") == files(tmp_path / "ref")


def test_paired_spec_errors_and_damaged_or_unpaired_stores(tmp_path, corpus, tiny_lm):
    with pytest.raises(HookPointError, match="drop ':in'"):
        HookPoint.parse(f"{MLP}:in").module_pair()
    unpaired = harvest(_cfg(tmp_path / "u", corpus, paired=False), loaded=tiny_lm)
    assert not unpaired.paired and unpaired.d_out is None
    with pytest.raises(StoreError, match="not a paired store.*--paired"):
        PairedRows(unpaired)
    st = harvest(_cfg(tmp_path / "p", corpus), loaded=tiny_lm)
    manifest = json.loads((st.folder / "manifest.json").read_text())
    manifest["d_out"] = 31  # the manifest no longer matches the shards' target tensors
    (st.folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"expected target \[64, 31\]"):
        ActivationStore.open(st.folder)
    manifest.pop("d_out")
    (st.folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="must record d_out"):
        ActivationStore.open(st.folder)


def test_several_modules_paired_in_one_pass_and_cached_training_agrees(tmp_path, corpus, tiny_lm):
    both = f"{MLP},model.layers.1.mlp"
    stores = harvest(_cfg(tmp_path / "multi", corpus, hook_point=both), loaded=tiny_lm)
    alone = harvest(_cfg(tmp_path / "one", corpus, hook_point="model.layers.1.mlp"), loaded=tiny_lm)
    assert [s.manifest["target_hook_point"] for s in stores] == [MLP, "model.layers.1.mlp"]
    names = ["acts", "target"]
    a, b = stores[1].read_rows(range(200), names), alone.read_rows(range(200), names)
    assert torch.equal(a["acts"], b["acts"]) and torch.equal(a["target"], b["target"])
    # a transcoder trained from the in-memory cache of the paired store equals one read from the shards
    from saekit.train import TrainConfig
    from saekit.train.trainer import train

    base = dict(target="out", k=4, d_sae=64, batch_size=50, total_tokens=50 * 8, quiet=True, encoder="exact")
    cached = train(TrainConfig.flat(cache_mb=64, **base), alone, out=tmp_path / "cached").sae
    files = train(TrainConfig.flat(cache_mb=0, prefetch=0, **base), alone, out=tmp_path / "files").sae
    for name, t in files.state_dict().items():
        assert torch.equal(t, cached.state_dict()[name]), name


def test_a_store_recorded_before_a_new_flag_still_resumes(tmp_path, corpus, tiny_lm, capsys):
    """A store whose manifest predates an off-by-default harvest flag (`paired`) is the same store: a rerun
    with today's flags reuses it; a flag that is recorded on one side and on is still refused."""
    folder = tmp_path / "old"
    harvest(_cfg(folder, corpus, hook_point="model.layers.0", paired=False), loaded=tiny_lm)
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    assert m["harvest_config"].pop("paired") == "False"  # as a saekit before --paired wrote it
    path.write_text(json.dumps(m))
    st = harvest(_cfg(folder, corpus, hook_point="model.layers.0", paired=False, quiet=False), loaded=tiny_lm)
    assert len(st) == 200 and "already holds this complete store" in capsys.readouterr().out
    m["harvest_config"]["newflag"] = "True"  # a flag the folder has on: a different store
    path.write_text(json.dumps(m))
    with pytest.raises(StoreError, match="newflag"):
        harvest(_cfg(folder, corpus, hook_point="model.layers.0", paired=False), loaded=tiny_lm)
