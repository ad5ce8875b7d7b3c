import pytest
import torch

from saekit.errors import ModelLoadError
from saekit.models import load_model, torch_dtype, with_dtype
from saekit.models.cache import atomic_folder

torch.set_num_threads(2)


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="smollm2"):
        load_model(str(tmp_path / "no-such-model"))


def test_bad_dtype():
    with pytest.raises(ModelLoadError, match="bfloat16"):
        torch_dtype("float8")


def test_atomic_folder_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError):
        with atomic_folder(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_folder(final) as tmp:
        (tmp / "done.bin").write_bytes(b"y")
    assert (final / "done.bin").read_bytes() == b"y"


@pytest.mark.realmodel
def test_smollm2_facts_and_answer():
    lm = load_model("smollm2", dtype="bfloat16", quiet=True)
    m, tok = lm.model, lm.tokenizer
    assert (lm.d_model, lm.n_layers, lm.kind, lm.dtype) == (576, 30, "causal_lm", "bfloat16")
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr(), "embeddings must be tied"
    assert m.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    ids = tok("Hello world").input_ids
    assert tok.convert_ids_to_tokens(1) == "<|im_start|>" and ids[0] != 1, "tokenizer does not add BOS"
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    with torch.no_grad():
        out = m.generate(tok(prompt, return_tensors="pt").input_ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0])


@pytest.mark.realmodel
def test_smollm2_float32_agrees_with_bfloat16():
    a = load_model("smollm2", dtype="float32", quiet=True)
    b = load_model("smollm2", dtype="bfloat16", quiet=True)
    ids = a.tokenizer("To be, or not to be, that is the question", return_tensors="pt").input_ids
    with torch.no_grad():
        la = a.model(ids, labels=ids).loss
        lb = b.model(ids, labels=ids).loss
    assert la < 5.0, f"float32 loss {la} too high: weights probably mis-dequantised"
    assert abs(la - lb) < 0.15
    # the demo loads float32 once and casts a copy: bit-identical to loading in bfloat16
    c = with_dtype(a, "bfloat16")
    with torch.no_grad():
        assert torch.equal(c.model(ids).logits, b.model(ids).logits)
    assert c.dtype == "bfloat16" and next(a.model.parameters()).dtype == torch.float32


def test_with_dtype_casts_a_copy_of_the_parameters_only(tiny_lm):
    assert with_dtype(tiny_lm, "float32") is tiny_lm  # already in that dtype: no copy
    m = tiny_lm.model
    before = {k: v.clone() for k, v in [*m.named_parameters(), *m.named_buffers()]}
    half = with_dtype(tiny_lm, "bfloat16")
    assert half.dtype == "bfloat16" and half.tokenizer is tiny_lm.tokenizer
    for name, p in half.model.named_parameters():
        assert p.dtype == torch.bfloat16 and torch.equal(p, before[name].to(torch.bfloat16)), name
    for name, b in half.model.named_buffers():  # rotary inv_freq: float32, as a direct bf16 load keeps it
        assert b.dtype == before[name].dtype and torch.equal(b, before[name]), name
    after = dict([*m.named_parameters(), *m.named_buffers()])
    assert all(torch.equal(after[k], v) and after[k].dtype == v.dtype for k, v in before.items())


@pytest.mark.realmodel
def test_minilm_similarity():
    lm = load_model("minilm", dtype="float32")
    assert (lm.d_model, lm.n_layers, lm.kind) == (384, 6, "encoder")
    sents = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."]
    enc = lm.tokenizer(sents, return_tensors="pt", padding=True)
    with torch.no_grad():
        h = lm.model(**enc).last_hidden_state
    mask = enc.attention_mask[..., None].float()
    emb = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
