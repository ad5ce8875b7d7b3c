"""A hand-made factor-sweep result (the shape `image_factors.run_factor_sweep` returns) for the table tests
of the factor and LoRA sweeps: one target, red, one arm row repeated."""

from __future__ import annotations

ROW = {"faithful_success": 0.5, "ci": (0.3, 0.7), "n": 24, "success": 0.6}


def factor_result(config: dict | None = None, test: dict | None = None, chosen: dict | None = None,
                  features: list[int] | None = None) -> dict:  # fmt: skip
    """The result, with `config`, `test`, the red target's `chosen` and `features` updated by the caller."""
    base_chosen = {
        "sae": {"method": "additive", "strength": 2.0, "train": 0.7},
        "diffmean": {"method": "additive", "strength": 1.0, "train": 0.5},
    }
    return {
        "config": {"factor": "colour", "model": "m", "n_test": 12, "preserve": ["colour", "position"],
                   **(config or {})},
        "test": {"sae": ROW, "diffmean": ROW, "unsteered": ROW,
                 "prompting": {k: v for k, v in ROW.items() if k != "success"},
                 "sae_minus_diffmean": {"difference": 0.1, "ci": (-0.1, 0.3)}, **(test or {})},
        "per_target": [{"target": "red", "features": features or [3],
                        "chosen": {**base_chosen, **(chosen or {})}}],
        "per_target_test": {"red": {"sae": 0.6, "diffmean": 0.4, "prompting": 0.9}},
    }  # fmt: skip
