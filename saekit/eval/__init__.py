"""SAE evaluation: reconstruction metrics on held-out activations and spliced-in CE / KL."""

from saekit.eval.activations import ActivationMetrics, activation_metrics, check_width
from saekit.eval.evaluate import EvalConfig, evaluate
from saekit.eval.spliced import SplicedMetrics, eval_positions, spliced_metrics

__all__ = [
    "ActivationMetrics",
    "activation_metrics",
    "check_width",
    "EvalConfig",
    "evaluate",
    "SplicedMetrics",
    "eval_positions",
    "spliced_metrics",
]
