"""CLIP harvest on tiny random CLIPs equals `output_hidden_states` indexing (the reference)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModel,
)

from saekit.data.images import skimage_samples
from saekit.errors import HookPointError
from saekit.models.clip import ClipSite, LoadedClip, clip_activations, hidden_state_hook

torch.set_num_threads(1)
EOS = 99

VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
)
TEXT = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    vocab_size=100,
    max_position_embeddings=16,
    eos_token_id=EOS,
    bos_token_id=98,
    pad_token_id=0,
)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    vis = CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()
    txt = CLIPTextModel(CLIPTextConfig(**TEXT)).eval()
    both = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)).eval()
    return vis, txt, both


def _text_batch():
    ids = torch.tensor([[98, 5, 6, 7, EOS, 0, 0], [98, 11, 12, 13, 14, 15, EOS]])
    return ids, (ids != 0).long()


@pytest.mark.parametrize("layer", [-2, -1, 0, 1])
def test_vision_cls_equals_hidden_states(models, layer):
    vis, _, both = models
    pv = torch.randn(3, 3, 32, 32)
    for model in (vis, both):
        tower = model.vision_model if hasattr(model, "vision_model") else model
        ref = tower(pixel_values=pv, output_hidden_states=True).hidden_states[layer][:, 0, :]
        got = clip_activations(model, ClipSite("vision", layer, "cls"), pixel_values=pv)
        torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_vision_all_tokens_and_pooled(models):
    vis, _, _ = models
    pv = torch.randn(2, 3, 32, 32)
    out = vis(pixel_values=pv, output_hidden_states=True)
    got = clip_activations(vis, ClipSite("vision", -2, "all"), pixel_values=pv)
    torch.testing.assert_close(got, out.hidden_states[-2].reshape(-1, 32), rtol=0, atol=0)
    torch.testing.assert_close(
        clip_activations(vis, ClipSite("vision", -2, "pooled"), pixel_values=pv), out.pooler_output
    )


def test_text_eos_equals_hidden_states_and_pooler(models):
    _, txt, both = models
    ids, mask = _text_batch()
    for model in (txt, both):
        tower = model.text_model if hasattr(model, "text_model") else model
        out = tower(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        eos_pos = torch.tensor([4, 6])
        for layer in (-2, -1):
            got = clip_activations(model, ClipSite("text", layer, "eos"), input_ids=ids, attention_mask=mask)
            torch.testing.assert_close(
                got, out.hidden_states[layer][torch.arange(2), eos_pos], rtol=0, atol=0
            )
        # the pooled text output is the final layer norm of the last layer at EOS
        last_eos = clip_activations(model, ClipSite("text", -1, "eos"), input_ids=ids, attention_mask=mask)
        torch.testing.assert_close(tower.final_layer_norm(last_eos), out.pooler_output)
        mean = clip_activations(model, ClipSite("text", -1, "mean"), input_ids=ids, attention_mask=mask)
        torch.testing.assert_close(mean[0], out.hidden_states[-1][0, :5].mean(0))


def test_hook_names_follow_transformers5_prefixes(models):
    vis, txt, both = models
    assert hidden_state_hook(vis, ClipSite("vision", -2)) == "encoder.layers.1"
    assert hidden_state_hook(both, ClipSite("vision", -2)) == "vision_model.encoder.layers.1"
    assert hidden_state_hook(both, ClipSite("text", -1, "eos")) == "text_model.encoder.layers.2"
    assert hidden_state_hook(txt, ClipSite("text", 0, "eos")) == "embeddings"
    with pytest.raises(HookPointError, match="out of range"):
        hidden_state_hook(vis, ClipSite("vision", 7))
    with pytest.raises(HookPointError, match="no text tower"):
        hidden_state_hook(vis, ClipSite("text", -1, "eos"))
    with pytest.raises(HookPointError, match="eos"):
        ClipSite("vision", -2, "eos")


class _WordTokenizer:
    """Offline stand-in for the CLIP tokenizer: bos, one id per word, eos, right padding."""

    def __call__(self, texts, padding=True, truncation=True, return_tensors="pt"):
        rows = [[98] + [1 + (hash(w) % 90) for w in t.split()][:12] + [EOS] for t in texts]
        T = max(map(len, rows))
        ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def _harvest(loaded, tmp, **kw):
    from saekit.data.harvest import ClipHarvestConfig, harvest_clip

    return harvest_clip(ClipHarvestConfig(out=tmp, quiet=True, dtype="float32", **kw), loaded=loaded)


def _all_rows(store):
    acts, metas = zip(*store.iter_rows_with_meta(1000))
    return torch.cat(acts), {k: torch.cat([m[k] for m in metas]) for k in metas[0]}


def test_harvest_into_store_matches_direct_reads(models, tmp_path):
    import json

    vis, txt, _ = models
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    images = skimage_samples()[:5]
    store = _harvest(
        LoadedClip(vis, proc, None, "tiny-clip"),
        tmp_path / "v",
        images="skimage",
        tokens=5,
        batch_size=2,
        shard_rows=3,
    )
    rows, meta = _all_rows(store)
    pv = proc(images=[i.pixels for i in images], return_tensors="pt")["pixel_values"]
    ref = vis(pixel_values=pv, output_hidden_states=True).hidden_states[-2][:, 0, :]
    torch.testing.assert_close(rows, ref, rtol=1e-5, atol=1e-5)
    # per-row image metadata: doc_id -> documents.json names the skimage sample; CLS is position 0
    docs = json.loads((tmp_path / "v" / "documents.json").read_text())
    assert [docs[d]["image"] for d in meta["doc_id"].tolist()] == [i.source for i in images]
    assert docs[0] == {"image": "skimage:astronaut"} and meta["position"].tolist() == [0] * 5
    assert store.manifest["patch_grid"] == [4, 4]  # 32 px / 8 px patches

    caps = ["a cat on a mat", "two dogs", "the moon at night over water"]
    (tmp_path / "caps.jsonl").write_text("\n".join(json.dumps({"caption": c}) for c in caps))
    store = _harvest(
        LoadedClip(txt, None, _WordTokenizer(), "tiny-clip"),
        tmp_path / "t",
        captions=tmp_path / "caps.jsonl",
        site="text:-1:eos",
        batch_size=2,
    )
    rows, meta = _all_rows(store)
    enc = _WordTokenizer()(caps)
    out = txt(**enc, output_hidden_states=True)
    eos_pos = (enc["input_ids"] == EOS).int().argmax(-1)
    torch.testing.assert_close(rows, out.hidden_states[-1][torch.arange(3), eos_pos], rtol=1e-5, atol=1e-5)
    assert meta["position"].tolist() == eos_pos.tolist()  # the EOS token's index
    docs = json.loads((tmp_path / "t" / "documents.json").read_text())
    assert [d["caption"] for d in docs] == caps and "patch_grid" not in store.manifest


def test_patch_tokens_positions_follow_the_grid(models, tmp_path):
    """vision:-1:all: position 0 = CLS, 1 + p = patch p row-major (p = r * cols + c)."""
    vis, _, _ = models
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    store = _harvest(
        LoadedClip(vis, proc, None, "tiny-clip"),
        tmp_path / "p",
        images="skimage",
        tokens=34,
        site="vision:-1:all",
        batch_size=2,
    )
    rows, meta = _all_rows(store)
    images = skimage_samples()[:2]
    pv = proc(images=[i.pixels for i in images], return_tensors="pt")["pixel_values"]
    hs = vis(pixel_values=pv, output_hidden_states=True).hidden_states[-1]  # [2, 1 + 16, d]
    rows_, cols = store.manifest["patch_grid"]
    assert hs.shape[1] == 1 + rows_ * cols == 17
    for i in range(34):
        d, p = int(meta["doc_id"][i]), int(meta["position"][i])
        assert (d, p) == (i // 17, i % 17)
        torch.testing.assert_close(rows[i], hs[d, p], rtol=1e-5, atol=1e-5)
    # patch (r=2, c=3) of image 1 is position 1 + 2 * 4 + 3
    torch.testing.assert_close(rows[17 + 1 + 2 * cols + 3], hs[1, 1 + 11], rtol=0, atol=0)
