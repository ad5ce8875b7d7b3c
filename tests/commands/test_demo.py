"""`saekit demo` end to end on the suite's tiny Llama: one process, the model loaded exactly once."""

from __future__ import annotations

import json

import pytest

import saekit.models
from saekit.commands import demo


@pytest.fixture()
def counted_loader(monkeypatch, tiny_lm):
    """`saekit.models.load_model` returning the tiny LM for the demo's model, counting those calls.

    The lower-level loaders are made to fail, so a step that bypassed `saekit.models.load_model`
    would fail the test rather than go uncounted."""
    calls: list[tuple[str, object]] = []
    real = saekit.models.load_model

    def load_model(name, **kw):
        if name == "minilm":  # the offline judge's sentence encoder, not the demo's model
            return real(name, **kw)
        calls.append((name, kw.get("dtype")))
        return tiny_lm

    def refuse(*a, **kw):
        raise AssertionError("a demo step loaded a model without saekit.models.load_model")

    monkeypatch.setattr(saekit.models, "load_model", load_model)
    monkeypatch.setattr("saekit.models.load.load_model", refuse)
    monkeypatch.setattr("saekit.models.smollm2.load_smollm2", refuse)
    return calls


def _cfg(tmp_path, corpus, **kw):
    base = dict(
        out=tmp_path / "demo", model="tiny-llama", hook_point="model.layers.1", corpus=str(corpus),
        tokens=600,
        train_tokens=1200, k=4, batch_size=64, expansion=2, eval_tokens=128, features="top:2",
        synthetic_steps=2, quiet=True,
    )  # fmt: skip
    base.update(kw)
    return demo.DemoConfig(**base)


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(f"Line {i}: the sea is wide and the ships sail on it." for i in range(80)))
    return path


def test_demo_loads_the_model_once_and_writes_every_step(tmp_path, corpus, counted_loader, capsys):
    seconds = demo.run(_cfg(tmp_path, corpus, steer_feature=0, steer_strength="2max"))
    assert counted_loader == [("tiny-llama", "float32")]  # once, in float32 (the fast dtype is a cast copy)
    out = tmp_path / "demo"
    man = json.loads((out / "acts" / "manifest.json").read_text())
    assert man["count"] == 600 and man["model"] == "tiny-llama" and man["hook_point"] == "model.layers.1"
    report = json.loads((out / "sae" / "eval" / "eval.json").read_text())
    assert report["spliced"]["n_tokens"] >= 128 and report["sae_config"]["d_sae"] == 64
    doc = json.loads((out / "analysis" / "analysis.json").read_text())
    assert len(doc["features"]) == 2 and all("synthetic" in f for f in doc["features"].values())
    assert (out / "analysis" / "browser" / "index.html").is_file()
    assert (out / "sae" / "scales.json").is_file()
    assert list(seconds) == list(demo.PHASES) and all(s >= 0 for s in seconds.values())
    text = capsys.readouterr().out
    assert "steered (clamp 2max)" in text and "features most active on the prompt" in text
    summary = text.strip().splitlines()[-1]
    assert summary.startswith("all done in") and all(f"{p} " in summary for p in demo.PHASES)
    # rerun, steering the default concept: the store is reused, the model still loaded once
    counted_loader.clear()
    demo.run(_cfg(tmp_path, corpus))
    assert counted_loader == [("tiny-llama", "float32")]
    assert json.loads((out / "acts" / "manifest.json").read_text())["shards"] == man["shards"]
    text = capsys.readouterr().out
    assert "steered toward 'war'" in text and "judges (offline" in text


def test_quick_preset_sizes():
    q = demo.sizes(demo.DemoConfig(quick=True, tokens=5, features="0"))
    assert (q.tokens, q.train_tokens, q.expansion, q.eval_tokens, q.features) == (
        20_000,
        40_000,
        4,
        1024,
        "readable:3",
    )
    full = demo.sizes(demo.DemoConfig(tokens=5, features="0"))
    assert (full.tokens, full.features) == (5, "0")


def test_default_size_follows_the_measured_rate_within_its_bounds(tmp_path):
    lo, hi = demo.TOKEN_RANGE
    budget = demo.HARVEST_BUDGET_S
    assert demo.tokens_for_budget(2_345.0) == int(2_345.0 * budget) // 10_000 * 10_000
    assert demo.tokens_for_budget(10.0) == lo and demo.tokens_for_budget(1e9) == hi
    s = demo.sizes(demo.DemoConfig(), 110_000)
    assert (s.tokens, s.train_tokens) == (110_000, 440_000)  # training: 4 passes over the store
    s = demo.sizes(demo.DemoConfig(tokens=50_000, train_tokens=70_000), 110_000)
    assert (s.tokens, s.train_tokens) == (50_000, 70_000)  # flags win over the measurement
    # a rerun resumes the store the first run asked for, whatever this machine measures now
    (tmp_path / "acts").mkdir()
    (tmp_path / "acts" / "manifest.json").write_text(json.dumps({"tokens_requested": 130_000}))
    assert demo._harvest_size(demo.DemoConfig(out=tmp_path), tmp_path / "acts", None, "cpu") == 130_000


def test_harvest_rate_times_the_truncated_forward(tiny_lm):
    """The rate is rows per second of a real forward: positive, and a model slowed down by a known
    sleep per forward measures at most batch*context / sleep."""
    import time as _time

    rate = demo.harvest_rate(tiny_lm, "model.layers.0", "cpu", batch=2, context=16)
    assert rate > 0
    h = tiny_lm.model.model.layers[0].register_forward_hook(lambda *a: _time.sleep(0.05))
    try:
        slow = demo.harvest_rate(tiny_lm, "model.layers.0", "cpu", batch=2, context=16)
    finally:
        h.remove()
    assert slow <= 2 * 16 / 0.05 and slow < rate
