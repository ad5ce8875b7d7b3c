"""`saekit export`: every supported (architecture, target) pair is read back by that library's math,
written here from the target's documented tensor names, and by `saekit.load`; the rest is refused.

The native SAEs have non-trivial input scales, biases and thresholds, so a wrong fold, layout or bias
convention shows as a mismatch. References read the exported files directly (safetensors / torch.load),
not through saekit's readers.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import saekit
from saekit.cli import main as cli
from saekit.errors import SAEFormatError
from saekit.formats.export import SUPPORTED, ExportConfig, export_sae
from saekit.sae import SAEConfig, build

from .conftest import D_IN, D_SAE, acts, assert_close
from .test_saelens import ref_decode, ref_encode
from .test_sparsify import ref_forward
from .test_vsae import vsae_ref

K = 5


def native(arch, seed=0, **kw):
    sae = build(
        SAEConfig(d_in=D_IN, d_sae=D_SAE, arch=arch, k=K if "topk" in arch else None, **kw), seed=seed
    )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
        sae.input_scale.fill_(2.0)  # a power of two: the fold is exact, a wrong fold is off by 2x
        if arch == "batchtopk":
            sae.threshold.fill_(0.2)
        if arch == "jumprelu":
            sae.log_threshold.copy_(torch.randn(D_SAE, generator=g) * 0.3 - 1.2)
    return sae.eval()


def saelens_ref(folder, x):
    cfg = json.loads((folder / "cfg.json").read_text())
    t = load_file(str(folder / "sae_weights.safetensors"))
    assert cfg["normalize_activations"] == "none" and cfg["apply_b_dec_to_input"] is True
    f = ref_encode(cfg["architecture"], t, x, k=cfg.get("k"))
    return f, ref_decode(t, f)


def sparsify_ref(folder, x):
    cfg = json.loads((folder / "cfg.json").read_text())
    t = load_file(str(folder / "sae.safetensors"))
    dense, out, *_ = ref_forward(t, x, cfg["k"])
    return dense, out + (x @ t["W_skip"].mT if cfg["skip_connection"] else 0)


def dl_ref(folder, x):
    cls = json.loads((folder / "config.json").read_text())["trainer"]["dict_class"]
    s = torch.load(folder / "ae.pt", weights_only=True)
    if cls == "VSAETopK":
        return vsae_ref(s, x, k=int(s["k"]))
    if cls == "JumpReluAutoEncoder":
        pre = x @ s["W_enc"] + s["b_enc"]
        f = F.relu(pre * (pre > s["threshold"]))
        return f, f @ s["W_dec"] + s["b_dec"]
    if cls == "GatedAutoEncoder":
        x_enc = (x - s["decoder_bias"]) @ s["encoder.weight"].T
        f = (x_enc + s["gate_bias"] > 0).float() * F.relu(s["r_mag"].exp() * x_enc + s["mag_bias"])
        return f, f @ s["decoder.weight"].T + s["decoder_bias"]
    bias = s["bias"] if cls == "AutoEncoder" else s["b_dec"]
    post = F.relu((x - bias) @ s["encoder.weight"].T + s["encoder.bias"])
    if cls == "AutoEncoderTopK":
        top = post.topk(int(s["k"]), dim=-1, sorted=False)
        post = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
    if cls == "BatchTopKSAE":
        post = post * (post > s["threshold"])
    return post, post @ s["decoder.weight"].T + bias


REFS = {"saelens": saelens_ref, "sparsify": sparsify_ref, "dictionary_learning": dl_ref}
PAIRS = [(target, arch) for target, archs in SUPPORTED.items() for arch in archs]


@pytest.mark.parametrize("target,arch", PAIRS, ids=[f"{t}-{a}" for t, a in PAIRS])
def test_export_matches_target_math_and_reads_back(tmp_path, target, arch):
    sae = native(arch, seed=len(arch))
    sae.save(tmp_path / "native")
    out = export_sae(ExportConfig(sae=str(tmp_path / "native"), to=target, out=str(tmp_path / "out")))
    x = acts(seed=7) * 3.0
    f_ref, out_ref = REFS[target](out, x)
    f = sae.encode(x)
    assert (f != 0).any() and (f == 0).any()
    assert_close(f_ref, f, f"{target} {arch}: the library's latents")
    assert_close(out_ref, sae.reconstruct(x), f"{target} {arch}: the library's reconstruction")
    again = saekit.load(out)
    # SAELens saves BatchTopK for inference as JumpReLU with the global threshold (so does this export)
    assert again.arch == ("jumprelu" if (target, arch) == ("saelens", "batchtopk") else arch)
    assert_close(again.encode(x), f, "saekit.load of the export: latents")
    assert_close(again.reconstruct(x), sae.reconstruct(x), "saekit.load of the export: reconstruction")


def test_layer_norm_to_saelens_and_skip_to_sparsify(tmp_path):
    ln = native("topk", normalization="layer_norm")
    ln.input_scale.fill_(1.0)
    ln.save(tmp_path / "ln")
    out = export_sae(ExportConfig(sae=str(tmp_path / "ln"), to="saelens", out=str(tmp_path / "ln_out")))
    assert json.loads((out / "cfg.json").read_text())["normalize_activations"] == "layer_norm"
    x = acts(seed=3) * 5.0 + 2.0
    assert_close(saekit.load(out).reconstruct(x), ln.reconstruct(x), "layer_norm export")
    sk = native("topk", skip_connection=True)
    sk.save(tmp_path / "sk")
    out = export_sae(ExportConfig(sae=str(tmp_path / "sk"), to="sparsify", out=str(tmp_path / "sk_out")))
    x = acts(seed=3)  # unit-scale rows: float32 rounding stays below the tolerance
    _, out_ref = sparsify_ref(out, x)
    assert_close(out_ref, sk.reconstruct(x), "skip export, sparsify math")


@pytest.mark.parametrize(
    "target,kw,why",
    [
        ("sparsify", {"arch": "relu"}, "sparsify has no class for saekit arch 'relu'"),
        ("saelens", {"arch": "topk_signed"}, "saelens has no class for saekit arch 'topk_signed'"),
        ("dictionary_learning", {"arch": "topk_signed"}, "no class for saekit arch 'topk_signed'"),
        ("sparsify", {"arch": "topk", "normalization": "layer_norm"}, "no per-row layer-norm"),
        ("saelens", {"arch": "topk", "skip_connection": True}, "no linear skip term"),
    ],
)
def test_refusals_name_the_reason(tmp_path, target, kw, why):
    arch = kw.pop("arch")
    native(arch, **kw).save(tmp_path / "s")
    with pytest.raises(SAEFormatError, match=why):
        export_sae(ExportConfig(sae=str(tmp_path / "s"), to=target, out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_unestimated_batchtopk_threshold_refused_and_cli(tmp_path, capsys):
    sae = native("batchtopk")
    sae.threshold.fill_(-1.0)
    sae.save(tmp_path / "b")
    assert cli(["export", str(tmp_path / "b"), "--to", "saelens", str(tmp_path / "o")]) == 1
    assert "never estimated" in capsys.readouterr().err
    native("topk").save(tmp_path / "t")
    assert cli(["export", str(tmp_path / "t"), "--to", "dictionary_learning", str(tmp_path / "dl")]) == 0
    assert (tmp_path / "dl" / "ae.pt").is_file() and (tmp_path / "dl" / "config.json").is_file()
