"""The small library seams analysis uses instead of its own copies: the store's row gather
(`ActivationStore.read_rows`), `capture(..., detach=False)` and `SAE.pre_activation`."""

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from saekit.data.store import ActivationStore
from saekit.errors import StoreError
from saekit.hooks import capture
from saekit.sae import SAEConfig, build


def test_read_rows_matches_shard_files(tiny_store):
    folder, acts, doc_id, token_id = tiny_store
    store = ActivationStore.open(folder)
    idx = [299, 0, 71, 70, 69, 150, 0, 140]  # across shards (70 rows each), unsorted, a duplicate
    got = store.read_rows(idx)
    # reference: the shard files read whole with safetensors, concatenated
    shards = [load_file(str(p)) for p in sorted(folder.glob("shard_*.safetensors"))]
    ref = {k: np.concatenate([s[k] for s in shards]) for k in shards[0]}
    np.testing.assert_array_equal(got["acts"].numpy(), ref["acts"][idx])
    for k in ("doc_id", "position", "token_id"):
        np.testing.assert_array_equal(got[k].numpy(), ref[k][idx])
    assert set(store.read_rows(idx, names=["position"])) == {"position"}
    assert store.read_rows([])["acts"].shape == (0, 8)
    with pytest.raises(StoreError, match="out of range"):
        store.read_rows([300])


def test_capture_detach_false_keeps_the_graph(tiny_lm):
    model = tiny_lm.model
    emb = torch.randn(1, 5, model.config.hidden_size, requires_grad=True)
    with capture(model, ["model.layers.0"], stop_after_last=True, detach=False) as cap:
        model(inputs_embeds=emb)
    h = cap.activations["model.layers.0"]
    (g,) = torch.autograd.grad(h[0, -1].sum(), emb)
    # reference: the same quantity from a full forward with hidden states
    emb2 = emb.detach().clone().requires_grad_(True)
    ref_h = model(inputs_embeds=emb2, output_hidden_states=True).hidden_states[1]
    (g_ref,) = torch.autograd.grad(ref_h[0, -1].sum(), emb2)
    torch.testing.assert_close(g, g_ref)
    with capture(model, ["model.layers.0"], stop_after_last=True) as cap:
        model(inputs_embeds=emb)
    assert not cap.activations["model.layers.0"].requires_grad


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu", "batchtopk"])
def test_pre_activation_raw_and_feature_subset(arch):
    sae = build(SAEConfig(d_in=8, d_sae=12, arch=arch, k=3 if "topk" in arch else None), seed=2).eval()
    with torch.no_grad():
        sae.input_scale.fill_(0.5)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    ref = (x * 0.5 - sae.b_dec) @ sae.W_enc + sae.b_enc  # written out from the documented formula
    torch.testing.assert_close(sae.pre_activation(x, raw=True), ref)
    torch.testing.assert_close(sae.pre_activation(x, [7, 2], raw=True), ref[:, [7, 2]])
    torch.testing.assert_close(sae.pre_activation(x * 0.5), ref)  # normalised input (old behaviour)
    lat = sae.encode(x)
    on = lat > 0  # where a feature fires its activation is its pre-activation
    torch.testing.assert_close(lat[on], ref[on])


def test_gated_pre_activation_is_the_magnitude_path():
    sae = build(SAEConfig(d_in=8, d_sae=12, arch="gated"), seed=2).eval()
    with torch.no_grad():
        sae.r_mag.normal_(0, 0.3)
        sae.b_mag.normal_(0, 0.3)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    mag = (x - sae.b_dec) @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag
    torch.testing.assert_close(sae.pre_activation(x, raw=True), mag)
    lat = sae.encode(x)
    on = lat > 0
    torch.testing.assert_close(lat[on], mag[on])
