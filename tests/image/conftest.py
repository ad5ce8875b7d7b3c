"""Tiny random-weight Kandinsky 2.2 pipelines (prior + decoder) built offline from configs.

The component sizes follow diffusers' own fast tests for KandinskyV22Pipeline / KandinskyV22PriorPipeline
(32-wide CLIP towers and prior, a 2-block UNet with `addition_embed_type="image"`, a small MoVQ), shrunk
further where only speed matters (the image encoder sees 32x32 inputs). The CLIP tokenizer is built from
a 55-entry character vocabulary written in the test, since the hub's tiny tokenizer cannot be fetched.
"""

from __future__ import annotations

import json
import string

import pytest
import torch

EMBED = 32
#: the tiny CLIP text encoder both pipelines use (Kandinsky's prior adds a projection)
TINY_CLIP_TEXT = dict(
    bos_token_id=0, eos_token_id=1, pad_token_id=2, hidden_size=EMBED, intermediate_size=37,
    num_attention_heads=4, num_hidden_layers=2, vocab_size=64, max_position_embeddings=16,
)  # fmt: skip
"""Width of the tiny CLIP image embedding the prior emits and the decoder consumes."""


def tiny_tokenizer(folder):
    """A real CLIPTokenizer over single characters (no merges), saved in `folder`."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for suffix in ("", "</w>"):
        for c in string.ascii_lowercase:
            vocab[c + suffix] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16, pad_token="!"
    )


def tiny_kandinsky_prior(tmp, seed: int = 0):
    from diffusers import KandinskyV22PriorPipeline, PriorTransformer, UnCLIPScheduler
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(seed)
    text = CLIPTextModelWithProjection(
        CLIPTextConfig(**TINY_CLIP_TEXT, projection_dim=EMBED)
    )
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=12, embedding_dim=EMBED, num_layers=1, num_embeddings=16
    )
    # clip_mean / clip_std start at 0, which would map every embedding to 0; std 1 keeps them alive
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))
    image = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=EMBED,
            image_size=32,
            projection_dim=EMBED,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            patch_size=8,
        )
    )
    pipe = KandinskyV22PriorPipeline(
        prior=prior,
        image_encoder=image.eval(),
        text_encoder=text.eval(),
        tokenizer=tiny_tokenizer(tmp / "tokenizer_src"),
        scheduler=UnCLIPScheduler(
            variance_type="fixed_small_log",
            prediction_type="sample",
            num_train_timesteps=1000,
            clip_sample=True,
            clip_sample_range=10.0,
        ),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_kandinsky_decoder(seed: int = 0):
    from diffusers import DDIMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,  # mean and variance
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=EMBED,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )
    movq = VQModel(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        vq_embed_dim=4,
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
        thresholding=False,
    )
    pipe = KandinskyV22Pipeline(unet=unet.eval(), scheduler=scheduler, movq=movq.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def kandinsky_folders(tmp_path_factory):
    """`prior/` and `decoder/` folders written by save_pretrained, loaded by path like a user's."""
    root = tmp_path_factory.mktemp("kandinsky")
    tiny_kandinsky_prior(root).save_pretrained(root / "prior")
    tiny_kandinsky_decoder().save_pretrained(root / "decoder")
    return root


def tiny_flux_with_text_encoders(tmp, seed: int = 0):
    """The tiny FluxPipeline of `saekit.models.flux` plus offline text towers: a CLIP text model (its
    pooled output is FLUX's `pooled_prompt_embeds`, width 32) and a T5 encoder (per-token embeds, width
    32). Both read the character CLIPTokenizer above; T5 only needs token ids, so it stands in for T5's
    own tokenizer."""
    from diffusers import FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from saekit.models.flux import tiny_flux_pipeline

    base = tiny_flux_pipeline(seed=seed, num_layers=1, num_single_layers=1)
    torch.manual_seed(seed + 1)
    clip = CLIPTextModel(
        CLIPTextConfig(**TINY_CLIP_TEXT)
    ).eval()
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=64, d_model=EMBED, d_kv=8, d_ff=37, num_layers=2, num_heads=4, decoder_start_token_id=0
        )
    ).eval()
    tok = tiny_tokenizer(tmp / "flux_tokenizer_src")
    pipe = FluxPipeline(
        scheduler=base.scheduler,
        vae=base.vae,
        transformer=base.transformer,
        text_encoder=clip,
        tokenizer=tok,
        text_encoder_2=t5,
        tokenizer_2=tok,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
