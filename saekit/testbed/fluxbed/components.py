"""The untrained diffusers / transformers components of the testbed's FluxPipeline, sized by the config."""

from __future__ import annotations

import torch

from saekit.testbed.fluxbed.config import FluxbedConfig
from saekit.testbed.fluxbed.render import CANVAS
from saekit.testbed.fluxbed.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_tokenizer, vocab


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """FLUX's three RoPE axes (unused id axis, row, column): even sizes summing to `head_dim`."""
    side = 2 * ((head_dim * 3 // 8) // 2)
    return (head_dim - 2 * side, side, side)


def make_vae(cfg: FluxbedConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.vae_channels),
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=min(8, min(cfg.vae_channels)),
        sample_size=CANVAS,
        mid_block_add_attention=False,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=1.0,
        shift_factor=0.0,
    )


def make_text_encoders(cfg: FluxbedConfig):
    """(CLIPTextModel, T5EncoderModel), one layer each, `text_dim` wide, over the caption vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    n_vocab = len(vocab())
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=n_vocab,
            hidden_size=cfg.text_dim,
            intermediate_size=2 * cfg.text_dim,
            projection_dim=cfg.text_dim,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=cfg.clip_max_length,
            pad_token_id=PAD_ID,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=n_vocab,
            d_model=cfg.text_dim,
            d_kv=cfg.text_dim // 2,
            d_ff=2 * cfg.text_dim,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
            decoder_start_token_id=PAD_ID,
        )
    )
    return clip, t5


def make_tokenizers(cfg: FluxbedConfig):
    """(CLIP-slot tokenizer, T5-slot tokenizer)."""
    return build_tokenizer("clip", cfg.clip_max_length), build_tokenizer("t5", max(cfg.t5_lengths))


def make_transformer(cfg: FluxbedConfig):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * cfg.latent_channels,
        num_layers=cfg.n_double,
        num_single_layers=cfg.n_single,
        attention_head_dim=cfg.head_dim,
        num_attention_heads=cfg.heads,
        joint_attention_dim=cfg.text_dim,
        pooled_projection_dim=cfg.text_dim,
        guidance_embeds=False,
        axes_dims_rope=rope_axes(cfg.head_dim),
    )


def make_scheduler():
    """FLUX.1's flow-matching Euler scheduler settings (dynamic shifting by image sequence length)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def pipeline_parts(cfg: FluxbedConfig, *, vae=None, text_encoders=None, tokenizers=None, transformer=None,
                   scheduler=None) -> dict:  # fmt: skip
    """The keyword arguments of `FluxPipeline(...)`: the parts given (trained), fresh ones for the rest,
    made in a fixed order (text encoders, tokenizers, scheduler, VAE, transformer) so a seed fixes them."""
    clip, t5 = text_encoders if text_encoders is not None else make_text_encoders(cfg)
    tok, tok2 = tokenizers if tokenizers is not None else make_tokenizers(cfg)
    return dict(
        scheduler=scheduler if scheduler is not None else make_scheduler(),
        vae=vae if vae is not None else make_vae(cfg),
        text_encoder=clip,
        tokenizer=tok,
        text_encoder_2=t5,
        tokenizer_2=tok2,
        transformer=transformer if transformer is not None else make_transformer(cfg),
    )


def param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
