"""Suite-wide guards."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _grad_mode_not_leaked():
    """Library code must scope no_grad/inference_mode; a global switch breaks every later training test."""
    assert torch.is_grad_enabled(), "grad mode was already disabled before this test"
    yield
    leaked = not torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    assert not leaked, "this test (or the code it ran) left torch grad mode disabled globally"


@pytest.fixture(scope="session")
def tiny_flux():
    """A random-weight FluxTransformer2DModel small enough for CPU tests (one joint + one single block)."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8),
    )
    return model.eval()


@pytest.fixture()
def flux_inputs():
    """Keyword inputs for `tiny_flux`: a 4x4 latent image (16 tokens) and 5 text tokens."""
    g = torch.Generator().manual_seed(1)
    h, w, text = 4, 4, 5
    return dict(
        hidden_states=torch.randn(1, h * w, 4, generator=g),
        encoder_hidden_states=torch.randn(1, text, 32, generator=g),
        pooled_projections=torch.randn(1, 32, generator=g),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(h * w, 3),
        txt_ids=torch.zeros(text, 3),
        return_dict=False,
    )


class CharTokenizer:
    """Bytes mod 60 + 4; id 0 is a special (BOS-like) token, 1 is padding."""

    all_special_ids = [0, 1]
    pad_token_id = 1
    bos_token_id = 0
    eos_token_id = None

    def __call__(self, text, add_special_tokens=False, verbose=False, return_tensors=None):
        ids = [4 + (b % 60) for b in text.encode("utf-8")]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}

    def convert_ids_to_tokens(self, i: int) -> str:
        """A printable stand-in for token `i` (ids 4.. map to ' ', '!', ... ; specials to <i>)."""
        return chr(28 + i) if i >= 4 else f"<{i}>"

    def decode(self, ids, skip_special_tokens=False) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return "".join(self.convert_ids_to_tokens(int(i)) for i in ids if i >= 4 or not skip_special_tokens)


@pytest.fixture(scope="session")
def char_tokenizer():
    return CharTokenizer()


@pytest.fixture(scope="session")
def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    from saekit.models import LoadedModel

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg).eval()
    return LoadedModel(model, CharTokenizer(), "tiny-llama", "causal_lm", "float32", 32, 2)
