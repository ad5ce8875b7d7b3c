"""Exporting transcoders: sparsify's transcoder folder (`transcode: true`, `W_skip`), read back by saekit's
own sparsify reader bit for bit; a clear refusal from the formats that have no TopK transcoder."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import saekit
from saekit.errors import SAEFormatError
from saekit.formats.export import ExportConfig, export_sae
from saekit.sae import SAEConfig, build

D_IN, D_SAE = 12, 40


def _transcoder(tmp_path, skip: bool, arch: str = "topk", d_out: int | None = None):
    """A native transcoder with random weights and input / output scales far from 1, saved."""
    k = 5 if arch in ("topk", "batchtopk") else None
    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, k=k, arch=arch, transcode=True, skip_connection=skip, d_out=d_out)
    tc = build(cfg, seed=0).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in tc.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        tc.input_scale.fill_(2.5)
        tc.output_scale.fill_(0.125)
        if arch == "batchtopk":
            tc.threshold.fill_(0.1)
        if arch == "jumprelu":
            tc.log_threshold.copy_(torch.rand(D_SAE, generator=g).mul(0.3).add(0.01).log())
    name = f"{arch}_{'skip' if skip else 'plain'}_{d_out}"
    return tc, tc.save(tmp_path / name)


def _sparsify_reference(t: dict, cfg: dict, x: torch.Tensor) -> torch.Tensor:
    """sparsify's transcoder forward, written from its documented math: no `- b_dec` before the encoder,
    top-k of relu(encoder(x)), decode, `+ x @ W_skip.mT`."""
    pre = torch.relu(x @ t["encoder.weight"].T + t["encoder.bias"])
    vals, idx = pre.topk(cfg["k"], dim=-1)
    out = torch.zeros_like(pre).scatter(-1, idx, vals) @ t["W_dec"] + t["b_dec"]
    return out + x @ t["W_skip"].mT if cfg["skip_connection"] else out


@pytest.mark.parametrize("skip", [False, True], ids=["transcoder", "skip_transcoder"])
def test_sparsify_export_round_trips_bit_exactly(tmp_path, skip):
    tc, folder = _transcoder(tmp_path, skip)
    out1 = export_sae(ExportConfig(str(folder), "sparsify", str(tmp_path / "sp1" / "layers.3.mlp")))
    cfg = json.loads((out1 / "cfg.json").read_text())
    assert cfg["transcode"] is True and cfg["skip_connection"] is skip and cfg["d_in"] == D_IN
    t1 = load_file(str(out1 / "sae.safetensors"))
    assert ("W_skip" in t1) is skip
    # the same function of raw activations, in sparsify's own math (scales folded into the weights)
    x = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(2)) * 4
    want = tc.reconstruct(x).detach()
    tol = dict(rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    torch.testing.assert_close(_sparsify_reference(t1, cfg, x), want, **tol)
    # saekit's sparsify reader: a native transcoder holding exactly the written tensors
    back = saekit.load(out1)
    assert back.cfg.transcode and back.cfg.skip_connection is skip
    assert (back.cfg.provenance.hook_point, back.cfg.provenance.target_hook_point) == (
        "layers.3.mlp:in",
        "layers.3.mlp",
    )
    assert torch.equal(back.W_enc, t1["encoder.weight"].T) and torch.equal(back.b_enc, t1["encoder.bias"])
    assert torch.equal(back.W_dec, t1["W_dec"]) and torch.equal(back.b_dec, t1["b_dec"])
    assert float(back.input_scale) == 1.0 and float(back.output_scale) == 1.0
    if skip:
        assert torch.equal(back.W_skip, t1["W_skip"].T)
    torch.testing.assert_close(back.reconstruct(x).detach(), want, **tol)
    # and exporting what was read gives the same files, byte for byte
    back.save(tmp_path / "native_again")
    out2 = export_sae(ExportConfig(str(tmp_path / "native_again"), "sparsify", str(tmp_path / "sp2")))
    assert (out2 / "sae.safetensors").read_bytes() == (out1 / "sae.safetensors").read_bytes()
    assert json.loads((out2 / "cfg.json").read_text()) == cfg


def _saelens_reference(t: dict, cfg: dict, x: torch.Tensor) -> torch.Tensor:
    """SAELens 6's transcoder forward as its classes define it: `sae_in @ W_enc + b_enc` (no `- b_dec`),
    ReLU (`transcoder`, `skip_transcoder`) or ReLU masked by `pre > threshold` (`jumprelu_transcoder`),
    `f @ W_dec + b_dec`, plus `x @ W_skip.T` for `skip_transcoder`."""
    pre = x @ t["W_enc"] + t["b_enc"]
    f = pre.relu()
    if cfg["architecture"] == "jumprelu_transcoder":
        f = f * (pre > t["threshold"])
    out = f @ t["W_dec"] + t["b_dec"]
    return out + x @ t["W_skip"].T if cfg["architecture"] == "skip_transcoder" else out


@pytest.mark.parametrize(
    "arch,skip,want",
    [("relu", False, "transcoder"), ("relu", True, "skip_transcoder"),
     ("jumprelu", False, "jumprelu_transcoder"), ("batchtopk", False, "jumprelu_transcoder")],
)  # fmt: skip
def test_saelens_transcoder_export_matches_its_math_and_reads_back_exactly(tmp_path, arch, skip, want):
    tc, folder = _transcoder(tmp_path, skip, arch=arch, d_out=9)
    out = export_sae(ExportConfig(str(folder), "saelens", str(tmp_path / "sl")))
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == want and cfg["d_out"] == 9 and cfg["apply_b_dec_to_input"] is False
    t = load_file(str(out / "sae_weights.safetensors"))
    x = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(2)) * 4
    want_y = tc.reconstruct(x).detach()
    tol = dict(rtol=1e-5, atol=1e-5 * float(want_y.abs().max()))
    torch.testing.assert_close(_saelens_reference(t, cfg, x), want_y, **tol)
    back = saekit.load(out)
    assert back.cfg.transcode and back.d_out == 9 and back.cfg.skip_connection is skip
    torch.testing.assert_close(back.reconstruct(x).detach(), want_y, **tol)
    back.save(tmp_path / "again")
    out2 = export_sae(ExportConfig(str(tmp_path / "again"), "saelens", str(tmp_path / "sl2")))
    t2 = load_file(str(out2 / "sae_weights.safetensors"))
    assert t2.keys() == t.keys()
    for name in t:  # thresholds pass through a log (jumprelu's parameter) and back: equal to rounding
        if name == "threshold":
            torch.testing.assert_close(t2[name], t[name], rtol=1e-6, atol=0)
        else:
            assert torch.equal(t2[name], t[name]), name


def test_formats_without_a_topk_transcoder_refuse_clearly(tmp_path):
    _, folder = _transcoder(tmp_path, skip=True)
    with pytest.raises(SAEFormatError, match="SAELens. transcoder classes are ReLU.*--to sparsify"):
        export_sae(ExportConfig(sae=str(folder), to="saelens", out=str(tmp_path / "sl")))
    _, jump_skip = _transcoder(tmp_path, skip=True, arch="jumprelu")
    with pytest.raises(SAEFormatError, match="jumprelu transcoder with a skip term"):
        export_sae(ExportConfig(sae=str(jump_skip), to="saelens", out=str(tmp_path / "sl")))
    with pytest.raises(SAEFormatError, match="dictionary_learning has no transcoder class"):
        export_sae(ExportConfig(sae=str(folder), to="dictionary_learning", out=str(tmp_path / "dl")))
    _, wide = _transcoder(tmp_path, skip=False, d_out=7)
    with pytest.raises(SAEFormatError, match="maps 12 -> 7"):
        export_sae(ExportConfig(sae=str(wide), to="sparsify", out=str(tmp_path / "w")))
    _, batch = _transcoder(tmp_path, skip=False, arch="batchtopk")
    with pytest.raises(SAEFormatError, match="sparsify has no class for saekit arch 'batchtopk'"):
        export_sae(ExportConfig(sae=str(batch), to="sparsify", out=str(tmp_path / "b")))
    assert not (tmp_path / "sl").exists() and not (tmp_path / "dl").exists()
