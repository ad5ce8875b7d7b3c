"""A flow-matching digits testbed with FLUX's block structure, for measuring diffusion steering.

The seed documents report that steering FLUX with SAE features "seems ineffective" without measuring
why. Real FLUX needs a GPU and gated weights; this testbed is a small conditional rectified-flow
transformer (joint text/image blocks, then single blocks on the concatenation, adaLN from timestep +
class) trained on scikit-learn's bundled 8x8 digits in minutes on a CPU, so every steering question
(method, block, stream, strength unit, step window) can be answered with numbers.
"""

from saekit.testbed.config import TestbedConfig

__all__ = ["TestbedConfig"]
