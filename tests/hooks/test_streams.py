"""Stream names on tiny FLUX / CLIP models, checked against manual recomputation."""

import pytest
import torch

from saekit.errors import HookPointError
from saekit.hooks import capture, intervene, resolve_stream


def test_flux_double_block_text_image(tiny_flux, flux_inputs):
    blk = "transformer_blocks.0"
    with (
        torch.no_grad(),
        capture(
            tiny_flux,
            [f"{blk}@text", f"{blk}@image", f"{blk}@0", f"{blk}@1", f"{blk}:in@image", f"{blk}:in@text"],
        ) as cap,
    ):
        tiny_flux(**flux_inputs)
    a = cap.activations
    assert a[f"{blk}@text"].shape == (1, 5, 32) and a[f"{blk}@image"].shape == (1, 16, 32)
    torch.testing.assert_close(a[f"{blk}@text"], a[f"{blk}@0"], rtol=0, atol=0)
    torch.testing.assert_close(a[f"{blk}@image"], a[f"{blk}@1"], rtol=0, atol=0)
    # the block's image input is x_embedder(hidden_states): recompute it independently
    with torch.no_grad():
        ref_img_in = tiny_flux.x_embedder(flux_inputs["hidden_states"])
        ref_txt_in = tiny_flux.context_embedder(flux_inputs["encoder_hidden_states"])
    torch.testing.assert_close(a[f"{blk}:in@image"], ref_img_in)
    torch.testing.assert_close(a[f"{blk}:in@text"], ref_txt_in)


def test_flux_single_block_and_chain(tiny_flux, flux_inputs):
    """Single block input (kwargs-only) equals the double block's output, stream by stream."""
    with (
        torch.no_grad(),
        capture(
            tiny_flux,
            [
                "transformer_blocks.0@image",
                "transformer_blocks.0@text",
                "single_transformer_blocks.0:in@image",
                "single_transformer_blocks.0:in@text",
                "single_transformer_blocks.0@image",
            ],
        ) as cap,
    ):
        out = tiny_flux(**flux_inputs)[0]
    a = cap.activations
    torch.testing.assert_close(
        a["single_transformer_blocks.0:in@image"], a["transformer_blocks.0@image"], rtol=0, atol=0
    )
    torch.testing.assert_close(
        a["single_transformer_blocks.0:in@text"], a["transformer_blocks.0@text"], rtol=0, atol=0
    )
    with torch.no_grad():
        temb = tiny_flux.time_text_embed(flux_inputs["timestep"] * 1000, flux_inputs["pooled_projections"])
        ref = tiny_flux.proj_out(tiny_flux.norm_out(a["single_transformer_blocks.0@image"], temb))
    torch.testing.assert_close(out, ref)


def test_flux_attn_image_text_order(tiny_flux, flux_inputs):
    with (
        torch.no_grad(),
        capture(
            tiny_flux,
            [
                "transformer_blocks.0.attn@image",
                "transformer_blocks.0.attn@text",
                "transformer_blocks.0.attn@0",
            ],
        ) as cap,
    ):
        tiny_flux(**flux_inputs)
    a = cap.activations
    assert a["transformer_blocks.0.attn@image"].shape == (1, 16, 32)
    assert a["transformer_blocks.0.attn@text"].shape == (1, 5, 32)
    torch.testing.assert_close(
        a["transformer_blocks.0.attn@image"], a["transformer_blocks.0.attn@0"], rtol=0, atol=0
    )


def test_flux_concat_output_needs_text_len(tiny_flux, flux_inputs):
    # inside a single block the attention returns one [text; image] tensor
    spec = "single_transformer_blocks.0.attn@image"
    with pytest.raises(HookPointError, match=r"text_len=.*Tensor\[1, 21, 32\]"):
        with torch.no_grad(), capture(tiny_flux, spec):
            tiny_flux(**flux_inputs)
    with (
        torch.no_grad(),
        capture(
            tiny_flux,
            [spec, "single_transformer_blocks.0.attn@text", "single_transformer_blocks.0.attn"],
            text_len=5,
        ) as cap,
    ):
        tiny_flux(**flux_inputs)
    whole = cap.activations["single_transformer_blocks.0.attn"]
    torch.testing.assert_close(cap.activations[spec], whole[:, 5:], rtol=0, atol=0)
    torch.testing.assert_close(
        cap.activations["single_transformer_blocks.0.attn@text"], whole[:, :5], rtol=0, atol=0
    )


def test_old_diffusers_concat_block_output_is_split_or_refused():
    """A stand-in for pre-0.30 FluxSingleTransformerBlock, which returned one [text; image] tensor."""

    class FluxSingleTransformerBlock(torch.nn.Module):
        def forward(self, hidden_states):
            return hidden_states * 2

    mod, out = FluxSingleTransformerBlock(), torch.arange(2 * 7 * 3.0).reshape(2, 7, 3)
    with pytest.raises(HookPointError, match="concatenated"):
        resolve_stream(mod, out, "image")
    torch.testing.assert_close(resolve_stream(mod, out, "image", text_len=3).select(out), out[:, 3:])
    torch.testing.assert_close(resolve_stream(mod, out, "text", text_len=3).select(out), out[:, :3])
    sel = resolve_stream(mod, out, "image", text_len=3)
    replaced = sel.replace(out, torch.zeros(2, 4, 3))
    torch.testing.assert_close(replaced[:, :3], out[:, :3])
    assert torch.count_nonzero(replaced[:, 3:]) == 0


def test_flux_intervene_replaces_only_selected_stream(tiny_flux, flux_inputs):
    blk = "transformer_blocks.0"
    with torch.no_grad():
        with capture(tiny_flux, [f"single_transformer_blocks.0:in@{s}" for s in ("image", "text")]) as base:
            tiny_flux(**flux_inputs)
        with (
            intervene(tiny_flux, f"{blk}@image", lambda x: x + 1.0),
            capture(tiny_flux, [f"single_transformer_blocks.0:in@{s}" for s in ("image", "text")]) as cap,
        ):
            tiny_flux(**flux_inputs)
    b, c = base.activations, cap.activations
    torch.testing.assert_close(
        c["single_transformer_blocks.0:in@text"], b["single_transformer_blocks.0:in@text"], rtol=0, atol=0
    )
    torch.testing.assert_close(
        c["single_transformer_blocks.0:in@image"], b["single_transformer_blocks.0:in@image"] + 1.0
    )


def test_flux_kwargs_only_input_intervention(tiny_flux, flux_inputs):
    """Blocks are called with keywords only; editing `:in@text` must reach the block."""
    with torch.no_grad():
        with capture(tiny_flux, "transformer_blocks.0@text") as base:
            tiny_flux(**flux_inputs)
        with (
            intervene(tiny_flux, "transformer_blocks.0:in@text", lambda x: x * 0),
            capture(tiny_flux, ["transformer_blocks.0@text", "transformer_blocks.0:in@text"]) as cap,
        ):
            tiny_flux(**flux_inputs)
    assert not torch.allclose(
        cap.activations["transformer_blocks.0@text"], base.activations["transformer_blocks.0@text"]
    )


def test_tuple_without_stream_or_unknown_name_is_refused_with_shapes(tiny_flux, flux_inputs):
    with pytest.raises(HookPointError, match=r"Tensor\[1, 5, 32\], Tensor\[1, 16, 32\]"):
        with torch.no_grad(), capture(tiny_flux, "transformer_blocks.0"):
            tiny_flux(**flux_inputs)
    with pytest.raises(HookPointError, match=r"named \('text', 'image'\)"):
        with torch.no_grad(), capture(tiny_flux, "transformer_blocks.0@latent"):
            tiny_flux(**flux_inputs)


def test_unknown_module_tuple_name_refused():
    class Pair(torch.nn.Module):
        def forward(self, x):
            return x, x[:, :2]

    out = Pair()(torch.ones(1, 4, 3))
    with pytest.raises(HookPointError, match=r"ambiguous or unknown.*Tensor\[1, 4, 3\], Tensor\[1, 2, 3\]"):
        resolve_stream(Pair(), out, "image")
    assert resolve_stream(Pair(), out, 1).select(out).shape == (1, 2, 3)
    with pytest.raises(HookPointError, match="index 2"):
        resolve_stream(Pair(), out, 2)


def test_clip_self_attn_out_stream(tiny_clip_text):
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    layer = tiny_clip_text.encoder.layers[0]
    with (
        torch.no_grad(),
        capture(
            tiny_clip_text,
            [
                "encoder.layers.0.self_attn@out",
                "encoder.layers.0.self_attn@0",
                "encoder.layers.0.self_attn",
                "encoder.layers.0:in",
                "encoder.layers.0",
            ],
        ) as cap,
    ):
        ref = tiny_clip_text(ids, output_hidden_states=True).hidden_states
    a = cap.activations
    torch.testing.assert_close(
        a["encoder.layers.0.self_attn@out"], a["encoder.layers.0.self_attn@0"], rtol=0, atol=0
    )
    torch.testing.assert_close(
        a["encoder.layers.0.self_attn"], a["encoder.layers.0.self_attn@0"], rtol=0, atol=0
    )
    torch.testing.assert_close(a["encoder.layers.0:in"], ref[0], rtol=0, atol=0)
    torch.testing.assert_close(a["encoder.layers.0"], ref[1], rtol=0, atol=0)
    # residual structure of a CLIP layer: out = r + mlp(ln2(r)) with r = input + attention output
    r = a["encoder.layers.0:in"] + a["encoder.layers.0.self_attn@out"]
    with torch.no_grad():
        torch.testing.assert_close(a["encoder.layers.0"], r + layer.mlp(layer.layer_norm2(r)))


def test_plain_tensor_output_rejects_index(tiny_llama):
    with pytest.raises(HookPointError, match="single tensor"):
        with torch.no_grad(), capture(tiny_llama, "model.layers.0@1"):
            tiny_llama(torch.zeros(1, 3, dtype=torch.long))
    with torch.no_grad(), capture(tiny_llama, ["model.layers.0@out", "model.layers.0"]) as cap:
        tiny_llama(torch.zeros(1, 3, dtype=torch.long))
    torch.testing.assert_close(
        cap.activations["model.layers.0@out"], cap.activations["model.layers.0"], rtol=0, atol=0
    )
