"""FLUX on-the-fly harvest (`harvest_diffusion`, the one FLUX driver) on a tiny random FluxPipeline.

The pipeline has no text encoders, so it is driven with prompt embeddings from a file. Reference: the
same generations run again with plain torch hooks recording the block outputs and the transformer's
`timestep` input per call (the "manual forward"), with one generator per image seeded seed + i."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from saekit.data.harvest import DiffusionHarvestConfig, harvest_diffusion
from saekit.models.flux import tiny_flux_pipeline

torch.set_num_threads(1)
TEXT_LEN, STEPS, SIDE, N = 8, 3, 16, 3


@pytest.fixture(scope="module")
def pipe():
    return tiny_flux_pipeline(seed=0, num_layers=1, num_single_layers=2)


@pytest.fixture(scope="module")
def embeds(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    t = {
        "prompt_embeds": torch.randn(N, TEXT_LEN, 32, generator=g),
        "pooled_prompt_embeds": torch.randn(N, 32, generator=g),
    }
    path = tmp_path_factory.mktemp("emb") / "embeds.safetensors"
    save_file(t, path)
    return path, t


def _harvest(pipe, embeds, out, **kw):
    base = dict(
        model="tiny-flux",
        prompt_embeds=embeds[0],
        num_inference_steps=STEPS,
        height=SIDE,
        width=SIDE,
        batch_size=2,
        dtype="float32",
        quiet=True,
        out=out,
        seed=10,
    )
    return harvest_diffusion(DiffusionHarvestConfig(**{**base, **kw}), loaded=pipe)


def _reference(pipe, module_path: str, embeds, docs: list[int], seed: int = 10):
    """Per transformer call: (timestep, text [B,T,d], image [B,I,d]) for images `docs` generated together."""
    t = embeds[1]
    module = pipe.transformer.get_submodule(module_path)
    calls, ts = [], []
    h1 = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: ts.append(float(kw["timestep"].reshape(-1)[0])), with_kwargs=True
    )
    h2 = module.register_forward_hook(lambda m, a, out: calls.append(tuple(o.detach().clone() for o in out)))
    try:
        pipe(
            prompt_embeds=t["prompt_embeds"][docs],
            pooled_prompt_embeds=t["pooled_prompt_embeds"][docs],
            num_inference_steps=STEPS,
            height=SIDE,
            width=SIDE,
            guidance_scale=3.5,
            output_type="latent",
            generator=[torch.Generator().manual_seed(seed + d) for d in docs],
        )
    finally:
        h1.remove()
        h2.remove()
    out = []
    for ts_, (a, b) in zip(ts, calls):
        text, image = (a, b) if a.shape[1] == TEXT_LEN else (b, a)  # identify streams by length, not order
        out.append((ts_, text, image))
    return out


def _rows(store):
    acts, metas = zip(*store.iter_rows_with_meta(100_000))
    return torch.cat(acts), {k: torch.cat([m[k] for m in metas]) for k in metas[0]}


@pytest.mark.parametrize(
    "module_path,stream",
    [
        ("transformer_blocks.0", "image"),
        ("transformer_blocks.0", "text"),
        ("single_transformer_blocks.1", "image"),
    ],
)
def test_all_tokens_all_steps_equal_manual_forward(pipe, embeds, tmp_path, module_path, stream):
    store = _harvest(pipe, embeds, tmp_path, hook_point=f"{module_path}@{stream}", tokens_per_step=0)
    acts, meta = _rows(store)
    refs = [_reference(pipe, module_path, embeds, [0, 1]), _reference(pipe, module_path, embeds, [2])]
    T = TEXT_LEN if stream == "text" else refs[0][0][2].shape[1]
    pick = 1 if stream == "text" else 2
    expected = torch.cat([r[pick].reshape(-1, 32) for ref in refs for r in ref])
    torch.testing.assert_close(acts, expected, rtol=1e-6, atol=1e-6)
    assert meta["timestep"].tolist() == [
        r[0] for ref in refs for r in ref for _ in range(r[pick].shape[0] * T)
    ]
    assert meta["step"].tolist() == [
        s for ref in refs for s, r in enumerate(ref) for _ in range(r[pick].shape[0] * T)
    ]
    assert meta["doc_id"].tolist() == ([0] * T + [1] * T) * STEPS + [2] * T * STEPS
    assert meta["position"].tolist() == list(range(T)) * (2 * STEPS + STEPS)
    m = store.manifest
    assert (m["height"], m["width"], m["num_inference_steps"], m["guidance_scale"]) == (
        SIDE,
        SIDE,
        STEPS,
        3.5,
    )
    if stream == "image":  # tiny VAE: no downsampling, then 2x2 packing -> 8 x 8 image tokens
        assert m["patch_grid"] == [8, 8] and m["patch_grid"][0] * m["patch_grid"][1] == T
    else:
        assert "patch_grid" not in m


def test_sampled_tokens_window_documents_and_single_image_regeneration(pipe, embeds, tmp_path):
    store = _harvest(
        pipe, embeds, tmp_path, hook_point="transformer_blocks.0@image", tokens_per_step=5, steps="1-2"
    )
    acts, meta = _rows(store)
    assert len(acts) == N * 2 * 5 and store.manifest["steps"] == [1, 2]
    docs = json.loads((tmp_path / "documents.json").read_text())
    assert [d["seed"] for d in docs] == [10, 11, 12] and all("prompt" in d for d in docs)
    # every row equals the block output of ITS image regenerated alone from its documents.json seed
    alone = {
        d: _reference(pipe, "transformer_blocks.0", embeds, [d], seed=docs[d]["seed"] - d) for d in range(N)
    }
    for row in range(len(acts)):
        doc, pos, step = int(meta["doc_id"][row]), int(meta["position"][row]), int(meta["step"][row])
        assert step in (1, 2) and float(meta["timestep"][row]) == alone[doc][step][0]
        torch.testing.assert_close(acts[row], alone[doc][step][2][0, pos], rtol=1e-5, atol=1e-5)
    for doc in range(N):
        for step in (1, 2):
            sel = (meta["doc_id"] == doc) & (meta["step"] == step)
            assert sel.sum() == 5 and meta["position"][sel].unique().numel() == 5  # 5 distinct tokens


def test_prompts_from_a_captions_file_need_text_encoders(pipe, tmp_path):
    from saekit.errors import SAEConfigError

    (tmp_path / "caps.jsonl").write_text('{"caption": "a red cube"}\n{"caption": "a dog"}\n')
    with pytest.raises(SAEConfigError, match="no text encoders.*--prompt-embeds"):
        harvest_diffusion(
            DiffusionHarvestConfig(
                model="tiny",
                prompts=str(tmp_path / "caps.jsonl"),
                height=SIDE,
                width=SIDE,
                out=tmp_path / "o",
                quiet=True,
            ),
            loaded=pipe,
        )
    from saekit.data.harvest.prompts import read_prompt_file

    assert read_prompt_file(str(tmp_path / "caps.jsonl")) == ["a red cube", "a dog"]
    with pytest.raises(SAEConfigError, match="exactly one"):
        DiffusionHarvestConfig(prompt=("x",), prompt_embeds=tmp_path / "e.safetensors")


def test_hf_prompts_spec_streams_the_named_split_and_column(monkeypatch):
    """`hf:NAME:SPLIT#COLUMN` (users with internet); offline, a stand-in `datasets` records the call."""
    import sys
    import types

    from saekit.data.harvest.prompts import read_hf_prompts
    from saekit.errors import CorpusError

    seen = {}

    def load_dataset(name, split, streaming):
        seen.update(name=name, split=split, streaming=streaming)
        return iter([{"url": "u", "caption": f"cap {i}"} for i in range(100)])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    got = read_hf_prompts("hf:google-research-datasets/conceptual_captions:validation#caption", 3)
    assert got == ["cap 0", "cap 1", "cap 2"]
    assert seen == {
        "name": "google-research-datasets/conceptual_captions",
        "split": "validation",
        "streaming": True,
    }
    assert (
        read_hf_prompts("hf:x", 2) == ["cap 0", "cap 1"] and seen["split"] == "train"
    )  # caption found by name
    with pytest.raises(CorpusError, match="--num-prompts"):
        read_hf_prompts("hf:x", 0)
