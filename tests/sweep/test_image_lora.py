"""The LoRA arm's pure pieces: the scale choice and the table, against hand-made answers."""

from __future__ import annotations

import numpy as np

from saekit.sweep.image_lora import choose_scale, lora_table_markdown, paired

from .factor_results import ROW, factor_result


def test_choose_scale_takes_the_best_and_breaks_ties_toward_the_smaller_scale():
    assert choose_scale({0.5: 0.2, 1.0: 0.6, 2.0: 0.4}) == 1.0
    assert choose_scale({2.0: 0.6, 0.25: 0.1, 1.0: 0.6}) == 1.0


def test_paired_difference_is_the_mean_of_per_image_differences():
    a, b = np.array([1, 1, 0, 1], bool), np.array([0, 1, 0, 0], bool)
    d = paired(a, b)
    assert d["difference"] == 0.5 and d["ci"][0] <= 0.5 <= d["ci"][1]


def test_table_has_every_arm_the_differences_per_target_rows_and_cost():
    diff = {"difference": 0.25, "ci": (0.05, 0.45)}
    result = factor_result(test={"lora": ROW, "sae_minus_diffmean": diff, "lora_minus_sae": diff,
                                 "lora_minus_diffmean": diff, "lora_minus_prompting": diff})  # fmt: skip
    result |= {
        "lora_per_target": [{"target": "red", "scale": 0.5, "train": 0.8, "test": 0.75}],
        "confidence_on_sheet": {"lora": 0.91},
        "cost": {
            "sae": {"params": 66112, "file_bytes": 264900},
            "lora": [
                {
                    "value": "red",
                    "trainable_params": 7168,
                    "file_bytes": 30000,
                    "train_s": 95.0,
                    "threads": 1,
                    "load_average_1min_at_end": 2.04,
                }
            ],
        },  # fmt: skip
    }
    text = lora_table_markdown(result)
    needles = (
        "| LoRA (best scale) | 0.50 [0.30, 0.70] | 0.60 | 0.91 |",
        "| LoRA - SAE | +0.25 [+0.05, +0.45] |",
        "| red | additive x2 (0.70) | x1 (0.50) | x0.5 (0.80) | 0.60 | 0.40 | 0.75 | 0.90 |",
        "| SAE (every concept) | 66,112 | 264,900",
        "| LoRA colour=red | 7,168 | 30,000 | 95 (1 thread, load 2.0) |",
    )
    for needle in needles:
        assert needle in text, needle
