"""The CI-sized testbed trains a generator whose samples a classifier recognises (well above chance),
runs the steering sweep, writes its reports, and reuses the cached models on a second run."""

from __future__ import annotations

import json

import torch

from saekit.testbed.config import ci_config
from saekit.testbed.experiment import run_testbed
from saekit.testbed.report import write_reports

torch.set_num_threads(1)


def test_ci_testbed_trains_sweeps_and_reports(tmp_path):
    cfg = ci_config()  # class to class: conditioned on another digit, so unsteered success must be ~0
    result = run_testbed(cfg, tmp_path)
    res = result.results
    m = res["model"]
    assert m["classifier_test_acc"] >= 0.9
    # the generator's samples, conditioned on class c, are classified as c far above chance (0.1)
    assert m["own_class_accuracy"] >= 0.4
    assert res["ceiling_conditioned_on_target"]["success"] >= 0.4
    assert res["floor_unsteered"]["success"] <= 0.2
    n_expected = (
        len(cfg.methods) * len(cfg.streams) * len(cfg.depths) * len(cfg.windows) * len(cfg.rel_strengths)
    )
    assert len(res["rows"]) == n_expected
    assert set(res["scenarios"]) == {"other"} and {r["depth"] for r in res["rows"]} == {"late", "cond"}
    # the best steering configuration beats the unsteered floor, beyond its own 95% interval
    best = res["best"]["overall"]
    assert best["success"] > res["floor_unsteered"]["success"] + 0.2
    assert best["success_ci"][0] > res["floor_unsteered"]["success"]
    assert best["n"] == 10 * cfg.eval_per_target
    assert all(0.0 <= r["success"] <= 1.0 and r["change"] >= 0 for r in res["rows"])
    # a stronger push changes the image more
    for method in cfg.methods:
        ch = [r["change"] for r in res["rows"] if r["method"] == method and r["depth"] == "late"]
        assert ch[-1] > ch[0]
    files = write_reports(result, cfg, tmp_path / "report")
    assert all(f.exists() and f.stat().st_size > 0 for f in files)
    assert any(f.suffix == ".png" for f in files)
    loaded = json.loads((tmp_path / "report" / "results.json").read_text())
    assert loaded["best"]["overall"] == res["best"]["overall"]

    again = run_testbed(cfg, tmp_path)
    assert again.results["model"]["cached"] is True
    assert again.results["model"]["own_class_accuracy"] == m["own_class_accuracy"]
