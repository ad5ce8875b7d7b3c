"""OSU-NLP-Group/saev `sae.pt` (JSON header line + torch.save'd state dict), every schema.

Files are written as saev's `dump` writes them (header, newline, `torch.save(state_dict)` into the same
stream). Reference math from saev's modeling.py: `h = x W_enc + b_enc` (schema >= 2; the original and
schema-1 code encoded `x - b_dec`); ReLU; TopK keeps the top k of `h` as they are (no ReLU); BatchTopK
at inference `h * (h > threshold)`, `relu(h)` while the threshold is <= 0; `f W_dec + b_dec`.
"""

from __future__ import annotations

import io
import json

import pytest
import torch

from saekit.errors import SAEFormatError
from saekit.formats import detect_format, load_any, load_saev

from .conftest import D_IN, D_SAE, acts, assert_close, rand


def saev_state(seed=0, threshold=None):
    s = {
        "W_enc": rand(D_IN, D_SAE, seed=seed, scale=0.5),
        "b_enc": rand(D_SAE, seed=seed + 1, scale=0.3) - 2.5,  # mostly negative pre-activations
        "W_dec": rand(D_SAE, D_IN, seed=seed + 2, scale=0.5),
        "b_dec": rand(D_IN, seed=seed + 3, scale=0.5),
    }
    if threshold is not None:
        s["activation.threshold"] = torch.tensor(threshold)
    return s


def write_saev(path, header, state):
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    path.write_bytes(json.dumps(header).encode() + b"\n" + buf.getvalue())
    return path


def header(schema, cls="TopK", top_k=4, **cfg):
    base = {"d_model": D_IN, "d_sae": D_SAE, **cfg}
    if schema is None:
        return {"d_vit": D_IN, "exp_factor": D_SAE // D_IN, "sparsity_coeff": 4e-4, "seed": 0}
    if schema == 1 and cls in ("Relu", "TopK", "BatchTopK"):
        return {"schema": 1, "cls": cls, "cfg": {**base, "top_k": top_k}}
    act = {"cls": cls, "params": {"key": cls.lower(), "top_k": top_k}}
    return {"schema": schema, "cfg": {**base, "activation": act}, "commit": "x", "lib": "1.0"}


def ref(state, x, cls, k=4, centred=False):
    h = (x - state["b_dec"] * centred) @ state["W_enc"] + state["b_enc"]
    if cls == "Relu":
        f = h.relu()
    elif cls == "TopK":
        idx = h.topk(k, dim=-1, sorted=False).indices
        f = torch.zeros_like(h).scatter(-1, idx, 1.0) * h
    else:
        theta = float(state["activation.threshold"])
        f = torch.where(h > 0, h, 0.0) if theta <= 0 else torch.where(h > theta, h, 0.0)
    return f, f @ state["W_dec"] + state["b_dec"]


@pytest.mark.parametrize("schema", [2, 3, 4, 5])
@pytest.mark.parametrize("cls", ["Relu", "TopK"])
def test_current_schemas(tmp_path, schema, cls):
    s = saev_state(seed=schema)
    path = write_saev(tmp_path / "run" / "sae.pt", header(schema, cls), s)
    assert detect_format(path.parent) == ("saev", path.parent)
    assert detect_format(path) == ("saev", path)
    sae = load_any(path.parent)
    x = acts(seed=schema)
    f, out = ref(s, x, cls)
    if cls == "TopK":
        assert (f < 0).any(), "fixture should keep some negative pre-activations"
        assert sae.arch == "topk_signed" and sae.signed_latents
    assert_close(sae.encode(x), f, f"saev schema {schema} {cls} latents")
    assert_close(sae.reconstruct(x), out, f"saev schema {schema} {cls} reconstruction")


@pytest.mark.parametrize("theta", [0.0, 0.35])
def test_batchtopk_threshold(tmp_path, theta):
    s = saev_state(seed=9, threshold=theta)
    sae = load_any(write_saev(tmp_path / "sae.pt", header(5, "BatchTopK"), s))
    x = acts(seed=9)
    f, out = ref(s, x, "BatchTopK")
    assert_close(sae.encode(x), f, "batchtopk latents")
    assert_close(sae.reconstruct(x), out, "batchtopk reconstruction")


@pytest.mark.parametrize(
    "schema,cls", [(None, "Relu"), (1, "Relu"), (1, "TopK"), (1, "SparseAutoencoderConfig")]
)
def test_old_schemas_encode_x_minus_b_dec(tmp_path, schema, cls):
    s = saev_state(seed=4)
    h = header(schema, cls)
    if cls == "SparseAutoencoderConfig":  # format 1B: activation given as a dict
        h = {
            "schema": 1,
            "cls": cls,
            "cfg": {"d_model": D_IN, "d_sae": D_SAE, "activation": {"cls": "TopK", "params": {"top_k": 4}}},
        }
    sae = load_saev(write_saev(tmp_path / "sae.pt", h, s))
    x = acts(seed=4)
    f, out = ref(s, x, "Relu" if cls == "Relu" else "TopK", centred=True)
    assert_close(sae.encode(x), f, f"schema {schema} latents")
    assert_close(sae.reconstruct(x), out, f"schema {schema} reconstruction")
    plain = load_saev(tmp_path / "sae.pt", center_input=False)
    assert_close(plain.encode(x), ref(s, x, "Relu" if cls == "Relu" else "TopK")[0], "override")


def test_refusals(tmp_path):
    with pytest.raises(SAEFormatError, match="no activation.threshold.*batch-coupled"):
        load_saev(write_saev(tmp_path / "a.pt", header(5, "BatchTopK"), saev_state()))
    with pytest.raises(SAEFormatError, match="schema 9"):
        load_saev(write_saev(tmp_path / "b.pt", {"schema": 9, "cfg": {}}, saev_state()))
    with pytest.raises(SAEFormatError, match="activation 'Matryoshka'"):
        load_saev(write_saev(tmp_path / "c.pt", header(5, "Matryoshka"), saev_state()))
    bad = tmp_path / "d.pt"
    bad.write_bytes(json.dumps(header(5)).encode() + b"\nnot a torch file")
    with pytest.raises(SAEFormatError, match="corrupt or truncated"):
        load_saev(bad)
    s = saev_state()
    s["W_enc"] = s["W_enc"][:, :5]
    with pytest.raises(SAEFormatError, match=r"'W_enc' has shape \(8, 5\)"):
        load_saev(write_saev(tmp_path / "e.pt", header(5), s))
