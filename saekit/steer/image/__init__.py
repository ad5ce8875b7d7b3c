"""Steering image generators with SAE features: FLUX in the denoising loop, FLUX's pooled and per-token
conditioning, and Kandinsky 2.2's prior image embedding.

What belongs here: the image-steering config and result (`config`), the entry that picks the generator
and the `saekit steer` image/LM decision (`run`), one driver per generator (`flux`, `kandinsky`), the
in-loop hook machinery over denoising steps and CFG branches (`diffusion`), the conditioning-embedding
edit (`conditioning`, which reuses the error-preserving edit of `saekit.steer.methods`) and what the
drivers share (`common`: strengths in absolute units, side-by-side PNGs). Method names and their
meaning on a conditioning embedding come from the method registry, never from a list here.
"""

from saekit.steer.image.config import ImageSteerConfig, ImageSteerResult
from saekit.steer.image.run import steer_image, steer_target

__all__ = ["ImageSteerConfig", "ImageSteerResult", "steer_image", "steer_target"]
