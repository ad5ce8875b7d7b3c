"""The default training budget and the still-falling check, on logs with a known trend."""

from __future__ import annotations

from train_helpers import correlated_rows, write_store

from saekit.train import TrainConfig, Trainer, open_source
from saekit.train.convergence import convergence_note, default_train_rows, fvu_plateau


def _log(fvu_of_step, total: int, every: int = 10) -> list[dict]:
    return [{"step": s, "fvu": fvu_of_step(s)} for s in range(every, total + 1, every)]


def test_default_budget_is_several_passes_over_a_small_store_and_one_over_a_big_one():
    assert default_train_rows(200_000) == 600_000  # 3 passes
    assert default_train_rows(500_000) == 1_000_000  # 2 passes: capped at 1M rows
    assert default_train_rows(5_000_000) == 5_000_000  # one pass
    assert default_train_rows(0) == 0


def test_a_falling_fvu_before_the_decay_is_reported_and_a_flat_one_is_not():
    total = 1000
    falling = fvu_plateau(_log(lambda s: 1.0 / (1 + s / 100), total), total, "linear", 0.8)
    assert falling is not None and falling.window == (600, 800)
    assert falling.still_falling and falling.drop > 0.1
    note = convergence_note(falling, total_tokens=64_000)
    assert note is not None and "--total-tokens 128000" in note and "far from converged" in note
    slow = fvu_plateau(_log(lambda s: 0.3 - s / 10_000, total), total, "linear", 0.8)  # -4%: still falling
    assert slow.still_falling and "more tokens would still help" in convergence_note(slow, 64_000)
    # flat before the decay, falling only inside it (what any LR decay does): converged
    decaying_only = _log(lambda s: 0.2 if s < 800 else 0.2 - (s - 800) / 10_000, total)
    flat = fvu_plateau(decaying_only, total, "linear", 0.8)
    assert flat is not None and not flat.still_falling and convergence_note(flat, 64_000) is None
    # without decay the window is the end of the run
    assert fvu_plateau(_log(lambda s: 0.2, total), total, "none", 0.8).window == (800, 1000)
    assert fvu_plateau(_log(lambda s: 0.2, total, every=400), total, "linear", 0.8) is None  # too sparse


def test_trainer_defaults_to_three_passes_over_a_small_store_and_records_the_check(tmp_path):
    store = write_store(tmp_path / "s", correlated_rows(512, 16, seed=0))
    cfg = TrainConfig.flat(arch="topk", k=4, expansion=2, batch_size=64, seed=0, init_sample=128,
                           lr_warmup_steps=1, log_every=1, device="cpu", quiet=True)  # fmt: skip
    tr = Trainer(cfg, open_source(store), out=tmp_path / "sae")
    assert tr.total_steps == 3 * 512 // 64
    tr.run()
    import json

    doc = json.loads((tmp_path / "sae" / "train_summary.json").read_text())
    conv = doc["convergence"]
    assert conv["checked"] and conv["window_steps"] == [15, 19]  # 24 steps: decay at 19, 4-step window
    assert conv["still_falling"] == (conv["late_fvu"] < (1 - 0.03) * conv["early_fvu"])
