"""EleutherAI sparsify folders (cfg.json + sae.safetensors) convert to TopK SAEs with identical outputs.

Checkpoints mimic `SparseCoder.save_to_disk`: `save_model` names (`encoder.weight [d_sae, d_in]`,
`encoder.bias`, `W_dec [d_sae, d_in]`, `b_dec`) and cfg.json = SparseCoderConfig fields + `d_in`.
Reference: `relu(encoder(x - b_dec))`, top-k of the post-ReLU values, `sum top_acts * W_dec + b_dec`.
"""

from __future__ import annotations

import contextlib
import json
import warnings

import pytest
import torch
from safetensors.torch import save_file

from saekit.errors import SAEFormatError
from saekit.formats import detect_format, load_any, load_sparsify

from .conftest import D_IN, D_SAE, acts, assert_close, rand


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def write_sparsify(folder, tensors, **cfg):
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "sae.safetensors"))
    base = {
        "activation": "topk",
        "expansion_factor": 4,
        "normalize_decoder": True,
        "num_latents": 0,
        "k": 5,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": D_IN,
    }
    base.update(cfg)
    (folder / "cfg.json").write_text(json.dumps(base))
    return folder


def sparsify_tensors(seed=0):
    return {
        "encoder.weight": rand(D_SAE, D_IN, seed=seed, scale=0.5),
        "encoder.bias": rand(D_SAE, seed=seed + 1, scale=0.3),
        "W_dec": rand(D_SAE, D_IN, seed=seed + 2, scale=0.5),
        "b_dec": rand(D_IN, seed=seed + 3, scale=0.3),
    }


def ref_forward(t, x, k, transcode=False):
    """sparsify's encode (fused_encoder) + decode, written from its source's math."""
    inp = x if transcode else x - t["b_dec"]
    pre = torch.relu(inp @ t["encoder.weight"].T + t["encoder.bias"])
    top_acts, top_idx = pre.topk(k, dim=-1, sorted=False)
    dense = torch.zeros_like(pre).scatter(-1, top_idx, top_acts)
    out = (top_acts[..., None] * t["W_dec"][top_idx]).sum(-2) + t["b_dec"]
    return dense, out, top_acts, top_idx


def test_topk_matches_reference(tmp_path):
    t = sparsify_tensors()
    folder = write_sparsify(tmp_path / "layers.6.mlp", t)  # expansion_factor 4 * d_in 8 = 32 latents
    sae = load_any(folder)
    assert sae.arch == "topk" and sae.cfg.k == 5 and sae.d_sae == D_SAE
    x = acts()
    dense, out, *_ = ref_forward(t, x, 5)
    assert_close(sae.encode(x), dense, "latents")
    assert_close(sae.reconstruct(x), out, "reconstruction")
    sp = sae.encode_sparse(x)
    assert_close(sae.decode_sparse(sp.values, sp.indices), out, "sparse decode")
    assert sae.cfg.provenance.hook_point == "layers.6.mlp" and sae.cfg.provenance.layer == 6


def test_num_latents_overrides_expansion_factor(tmp_path):
    t = sparsify_tensors(seed=10)
    folder = write_sparsify(tmp_path / "h", t, num_latents=D_SAE, expansion_factor=99, k=3)
    sae = load_sparsify(folder)
    x = acts(seed=11)
    dense, out, *_ = ref_forward(t, x, 3)
    assert sae.d_sae == D_SAE
    assert_close(sae.encode(x), dense, "latents")
    assert_close(sae.reconstruct(x), out, "reconstruction")


def test_transcoder_loads_as_a_native_transcoder(tmp_path):
    """A sparsify transcoder (no `- b_dec` before its encoder) is a native transcoder, tensor for tensor."""
    t = sparsify_tensors(seed=20)
    folder = write_sparsify(tmp_path / "layers.2.mlp", t, transcode=True, k=4)
    with _no_warning():
        sae = load_sparsify(folder)
    assert sae.cfg.transcode and torch.equal(sae.b_enc, t["encoder.bias"])
    assert (sae.cfg.provenance.hook_point, sae.cfg.provenance.target_hook_point) == (
        "layers.2.mlp:in",
        "layers.2.mlp",
    )
    x = acts(seed=21)
    dense, out, *_ = ref_forward(t, x, 4, transcode=True)
    assert not torch.allclose(dense, ref_forward(t, x, 4, transcode=False)[0]), (
        "b_dec must matter for this test"
    )
    assert_close(sae.encode(x), dense, "transcoder latents")
    assert_close(sae.reconstruct(x), out, "transcoder output")


def test_bf16_weights_keep_dtype(tmp_path):
    t = {k: v.to(torch.bfloat16) for k, v in sparsify_tensors(seed=30).items()}
    sae = load_sparsify(write_sparsify(tmp_path / "h", t))
    assert sae.dtype == torch.bfloat16 and sae.cfg.dtype == "bfloat16"
    assert torch.equal(sae.W_enc, t["encoder.weight"].T) and torch.equal(sae.W_dec, t["W_dec"])


def test_root_with_hookpoints_asks_to_choose(tmp_path):
    write_sparsify(tmp_path / "root" / "layers.0", sparsify_tensors())
    write_sparsify(tmp_path / "root" / "layers.1", sparsify_tensors(seed=5))
    assert detect_format(tmp_path / "root")[0] == "sparsify"
    with pytest.raises(SAEFormatError, match=r"2 hookpoints \(layers.0, layers.1\)"):
        load_any(tmp_path / "root")


@pytest.mark.parametrize("transcode", [False, True])
def test_skip_transcoder_matches_reference(tmp_path, transcode):
    """sparsify skip transcoders add `x @ W_skip.mT` to the decoder output (W_skip [d_out, d_in])."""
    t = sparsify_tensors(seed=11)
    t["W_skip"] = rand(D_IN, D_IN, seed=12, scale=0.4)
    with _no_warning():
        sae = load_sparsify(write_sparsify(tmp_path / "s", t, skip_connection=True, transcode=transcode))
    assert sae.cfg.skip_connection
    x = acts(seed=13)
    dense, out, *_ = ref_forward(t, x, 5, transcode=transcode)
    out = out + x @ t["W_skip"].mT
    assert_close(sae.encode(x), dense, "skip latents")
    assert_close(sae.reconstruct(x), out, "skip reconstruction")
    assert_close(sae.decode(dense, x), out, "decode(latents, x)")
    sae.save(tmp_path / "native")
    assert_close(load_any(tmp_path / "native").reconstruct(x), out, "skip survives the native format")


def test_skip_without_weights_and_groupmax_refused(tmp_path):
    with pytest.raises(SAEFormatError, match="W_skip"):
        load_sparsify(write_sparsify(tmp_path / "a", sparsify_tensors(), skip_connection=True))
    t = sparsify_tensors()
    t["W_skip"] = torch.zeros(D_IN, D_IN + 2)  # d_out != d_in: no native equivalent
    with pytest.raises(SAEFormatError, match="W_skip.*d_out = d_in"):
        load_sparsify(write_sparsify(tmp_path / "c", t, skip_connection=True))
    with pytest.raises(SAEFormatError, match="groupmax"):
        load_sparsify(write_sparsify(tmp_path / "b", sparsify_tensors(), activation="groupmax"))


def test_wrong_shape_and_missing_tensor_named(tmp_path):
    t = sparsify_tensors()
    t["encoder.weight"] = t["encoder.weight"].T  # [d_in, d_sae]: a layout mistake
    with pytest.raises(SAEFormatError, match=r"'encoder.weight' has shape \(8, 32\).*\(32, 8\)"):
        load_sparsify(write_sparsify(tmp_path / "a", t))
    t = sparsify_tensors()
    del t["b_dec"]
    with pytest.raises(SAEFormatError, match="b_dec"):
        load_sparsify(write_sparsify(tmp_path / "b", t))
