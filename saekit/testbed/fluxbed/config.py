"""The configuration of `saekit testbed build` (one frozen dataclass; also the command's flags)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from saekit.errors import SAEConfigError


@dataclass(frozen=True)
class FluxbedConfig:
    """Everything that decides the built pipeline and its figures; saved as `build_config.json`."""

    seed: int = 0
    """Seed for the digit split, the renders, initialisation, noise and the evaluation prompts."""
    # --- data ----------------------------------------------------------------------------------
    n_train_renders: int = 24000
    """Captioned renders (train digit images, training factor combinations) the models learn from."""
    test_fraction: float = 0.25
    """Fraction of sklearn's digit images (per digit) kept out of every training set."""
    # --- VAE -----------------------------------------------------------------------------------
    vae_channels: tuple[int, ...] = (8, 16, 32)
    """AutoencoderKL block widths; n blocks give a 2^(n-1) downsampling (3: 32x32 to 8x8, which packs to
    4x4 = 16 image tokens; 2: 16x16 latents, 64 tokens). Three blocks need more VAE steps for the same
    round trip (2,000 steps: digit 0.91, size 0.97 judged on it; 1,000: 0.83, 0.82) but make a flow step
    of a transformer twice as wide on 16 tokens cost about what the narrow one on 64 did, and in the
    same CPU budget the wider one learns the digit's shape faster (docs/results/fluxbed/README.md,
    second build)."""
    latent_channels: int = 8
    """VAE latent channels (FLUX.1 uses 16); packed 2x2 they make the transformer's 4x this input."""
    vae_steps: int = 2000
    """AdamW steps for the VAE."""
    vae_batch: int = 32
    vae_lr: float = 2e-3
    vae_kl: float = 1e-6
    """Weight of the KL term (small: the latents only need to be smooth enough to decode samples)."""
    # --- text encoders -------------------------------------------------------------------------
    text_dim: int = 64
    """Width of the CLIP text model and the T5 encoder (the transformer's pooled and joint dims)."""
    clip_max_length: int = 24
    """The CLIP tokenizer's model_max_length (FluxPipeline pads CLIP prompts to it)."""
    t5_lengths: tuple[int, ...] = (16, 24, 32, 512)
    """T5 padding lengths drawn per training batch. FluxPipeline pads the T5 prompt to
    `max_sequence_length` (512 unless the caller says otherwise) and FLUX's attention has no text
    mask, so the transformer is trained to give the same image for any padding length."""
    t5_long_every: int = 16
    """Every this many steps the batch uses the longest T5 length; otherwise a shorter one."""
    # --- transformer ---------------------------------------------------------------------------
    n_double: int = 2
    """FluxTransformerBlock count (FLUX.1: 19)."""
    n_single: int = 2
    """FluxSingleTransformerBlock count (FLUX.1: 38)."""
    heads: int = 4
    head_dim: int = 32
    """Width = heads * head_dim; the RoPE axes split head_dim (FLUX.1: 24 heads of 128)."""
    flow_steps: int = 5000
    """AdamW steps of flow matching (transformer and both text encoders trained together)."""
    flow_batch: int = 32
    flow_lr: float = 2e-3
    flow_ema: float = 0.998
    """Decay of an exponential moving average of the flow-matching weights, which the saved pipeline
    holds instead of the last step's (0: no average)."""
    caption_dropout: float = 0.1
    """Probability of training on the empty prompt (enables FluxPipeline's true CFG with `true_cfg_scale`)."""
    # --- evaluation ----------------------------------------------------------------------------
    judge_train_renders: int = 6000
    """Real renders (train digit images) the factor judges are fitted on."""
    judge_test_renders: int = 2000
    """Real renders (test digit images) the judges' accuracy is measured on."""
    eval_prompts: int = 200
    """Generations scored per prompt split (training combinations and held-out ones)."""
    eval_steps: int = 12
    """`num_inference_steps` of the FluxPipeline calls that are scored."""
    eval_batch: int = 50
    quiet: bool = False
    """No progress bars."""

    def __post_init__(self) -> None:
        positive = ("n_train_renders", "vae_steps", "vae_batch", "flow_steps", "flow_batch", "eval_prompts")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SAEConfigError(f"FluxbedConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.test_fraction < 1:
            raise SAEConfigError(f"FluxbedConfig.test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0 <= self.flow_ema < 1:
            raise SAEConfigError(f"FluxbedConfig.flow_ema must be in [0, 1), got {self.flow_ema}")
        if self.head_dim % 4 != 0:
            raise SAEConfigError(
                f"FluxbedConfig.head_dim must be a multiple of 4 (RoPE axes), got {self.head_dim}"
            )
        if not self.t5_lengths or min(self.t5_lengths) < 16:
            raise SAEConfigError("FluxbedConfig.t5_lengths must hold lengths >= 16 (a caption is 12 tokens)")
        if len(self.vae_channels) < 2:
            raise SAEConfigError("FluxbedConfig.vae_channels needs at least 2 blocks (a 2x2 packed latent)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def ci_config(**over) -> FluxbedConfig:
    """The tiny configuration the tests build (about a minute on one thread; 53 s wall clock measured on a
    loaded machine, 85-100 s inside pytest). Its generations beat chance on position only."""
    base = dict(
        n_train_renders=1500,
        vae_channels=(4, 8),
        latent_channels=4,
        vae_steps=150,
        vae_batch=32,
        text_dim=32,
        t5_lengths=(16, 32),
        t5_long_every=4,
        n_double=1,
        n_single=1,
        heads=2,
        head_dim=16,
        flow_steps=800,
        flow_batch=16,
        flow_ema=0.0,
        judge_train_renders=1500,
        judge_test_renders=400,
        eval_prompts=40,
        eval_steps=6,
        eval_batch=40,
    )
    base.update(over)
    return FluxbedConfig(**base)
