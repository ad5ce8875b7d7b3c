import pytest
import torch

# one thread: tiny models are overhead-bound, and on a shared 2-core machine OpenMP threads waiting
# for each other cost far more than they gain
torch.set_num_threads(1)


def make_sae(
    arch: str = "relu",
    d_in: int = 6,
    d_sae: int = 10,
    k: int | None = None,
    seed: int = 0,
    dtype: str = "float32",
    input_scale: float = 1.0,
    hook_point: str | None = None,
):
    from saekit.sae import Provenance, SAEConfig, build

    if arch in ("topk", "batchtopk") and k is None:
        k = 3
    cfg = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        arch=arch,
        k=k,
        dtype=dtype,
        normalize_decoder=False,
        init_decoder_norm=1.0,
        provenance=Provenance(hook_point=hook_point),
    )
    sae = build(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        # non-unit decoder rows and non-zero biases so unit conversions and b_dec are exercised
        sae.W_dec.mul_(torch.rand(d_sae, 1, generator=g).to(sae.dtype) + 0.5)
        sae.b_dec.copy_((torch.randn(d_in, generator=g) * 0.1).to(sae.dtype))
        sae.b_enc.copy_((torch.randn(d_sae, generator=g) * 0.1).to(sae.dtype))
        sae.input_scale.fill_(input_scale)
    return sae


@pytest.fixture
def sae_factory():
    return make_sae


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm):
    """The suite's tiny Llama (tests/conftest.py: 2 layers, d=32, vocab 64) as a bare model: steering
    tests pair it with `tiny_tokenizer`. A test that changes it (dtype, device) works on a copy."""
    return tiny_lm.model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A word-level tokenizer over 64 words ('w0'..'w61', eos, unk) -- no downloads."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(62)}
    vocab["<eos>"] = 62
    vocab["<unk>"] = 63
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")


def planted_sae(model, token: int, hook_point: str = "model.layers.1"):
    """A ReLU SAE (d_sae=8) whose feature 3 reads the input embedding of `token` and writes its unembedding.

    Steering feature 3 at the last layer therefore pushes the model to emit `token`, and re-reading text
    that contains `token` activates feature 3 -- a known answer for the end-to-end test.
    """
    sae = make_sae("relu", d_in=model.config.hidden_size, d_sae=8, seed=5, hook_point=hook_point)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight[token].float()
        unemb = model.get_output_embeddings().weight[token].float()
        sae.W_enc[:, 3] = emb / emb.norm() ** 2
        sae.b_enc[3] = -0.5
        sae.W_dec[3] = unemb / unemb.norm()
    return sae
