"""SAE training: config, activation sources, the resumable trainer."""

from saekit.train.config import TrainConfig, default_lr
from saekit.train.source import ActivationSource, TensorSource, open_source
from saekit.train.trainer import Trainer, TrainResult, train

__all__ = [
    "TrainConfig",
    "default_lr",
    "ActivationSource",
    "TensorSource",
    "open_source",
    "Trainer",
    "TrainResult",
    "train",
]
