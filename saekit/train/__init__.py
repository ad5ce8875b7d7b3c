"""SAE training: config, activation sources, the resumable, device-aware, data-parallel trainer."""

from saekit.train.config import TrainConfig, default_lr
from saekit.train.distributed import DistContext
from saekit.train.sae_spec import SAESpec
from saekit.train.source import ActivationSource, TensorSource, open_source
from saekit.train.trainer import Trainer, TrainResult, train

__all__ = [
    "TrainConfig",
    "SAESpec",
    "DistContext",
    "default_lr",
    "ActivationSource",
    "TensorSource",
    "open_source",
    "Trainer",
    "TrainResult",
    "train",
]
