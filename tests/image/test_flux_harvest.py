"""FLUX on-the-fly harvest on a tiny random-weight FluxPipeline (no hub files: the pipeline is driven
with prompt embeddings, so it needs no tokenizers or text encoders).

Reference: a second, identical pipeline run with plain torch hooks recording the block outputs and
the transformer's `timestep` input per call (the "manual forward")."""

from __future__ import annotations

import pytest
import torch

from saekit.data.diffusion_harvest import DiffusionHarvestConfig, harvest_pipeline
from saekit.data.store import ActivationStore
from saekit.data.store_writer import StoreWriter
from saekit.models.flux import tiny_flux_pipeline

torch.set_num_threads(1)
TEXT_LEN, STEPS, SIDE = 8, 3, 16


@pytest.fixture(scope="module")
def pipe():
    return tiny_flux_pipeline(seed=0, num_layers=1, num_single_layers=2)


def _kwargs(seed: int, n: int = 2):
    g = torch.Generator().manual_seed(seed)
    return dict(
        prompt_embeds=torch.randn(n, TEXT_LEN, 32, generator=g),
        pooled_prompt_embeds=torch.randn(n, 32, generator=g),
        num_inference_steps=STEPS,
        height=SIDE,
        width=SIDE,
        guidance_scale=3.5,
        output_type="latent",
        generator=torch.Generator().manual_seed(seed),
    )


def _reference(pipe, module_path: str, kwargs):
    """Per transformer call: (timestep, text [B,T,d], image [B,I,d]) from raw hooks on the block."""
    module = pipe.transformer.get_submodule(module_path)
    calls, ts = [], []
    h1 = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: ts.append(float(kw["timestep"].reshape(-1)[0])), with_kwargs=True
    )
    h2 = module.register_forward_hook(lambda m, a, out: calls.append(tuple(o.detach().clone() for o in out)))
    try:
        pipe(**kwargs)
    finally:
        h1.remove()
        h2.remove()
    out = []
    for t, (a, b) in zip(ts, calls):
        text, image = (a, b) if a.shape[1] == TEXT_LEN else (b, a)  # identify streams by length, not order
        out.append((t, text, image))
    return out


def _rows(folder):
    store = ActivationStore.open(folder)
    acts, metas = zip(*store.iter_rows_with_meta(100_000))
    meta = {k: torch.cat([m[k] for m in metas]) for k in metas[0]}
    return torch.cat(acts), meta


@pytest.mark.parametrize(
    "module_path,stream",
    [
        ("transformer_blocks.0", "image"),
        ("transformer_blocks.0", "text"),
        ("single_transformer_blocks.1", "image"),
    ],
)
def test_all_tokens_all_steps_equal_manual_forward(pipe, tmp_path, module_path, stream):
    cfg = DiffusionHarvestConfig(hook_point=f"{module_path}@{stream}", tokens_per_step=0)
    with StoreWriter(tmp_path, {"model": "tiny-flux", "hook_point": cfg.hook_point, "d": 32}) as w:
        n = harvest_pipeline(pipe, [_kwargs(1)], cfg, w, quiet=True)
    ref = _reference(pipe, module_path, _kwargs(1))
    assert len(ref) == STEPS
    T = TEXT_LEN if stream == "text" else ref[0][2].shape[1]
    assert n == STEPS * 2 * T
    acts, meta = _rows(tmp_path)
    expected = torch.cat([(r[1] if stream == "text" else r[2]).reshape(-1, 32) for r in ref])
    torch.testing.assert_close(acts, expected, rtol=1e-6, atol=1e-6)
    expected_t = torch.tensor([r[0] for r in ref]).repeat_interleave(2 * T)
    assert torch.equal(meta["timestep"], expected_t)
    assert meta["timestep"][0] > meta["timestep"][-1]  # noise -> data
    assert meta["doc_id"].tolist() == ([0] * T + [1] * T) * STEPS
    assert meta["position"].tolist() == list(range(T)) * 2 * STEPS


def test_sampled_tokens_window_and_doc_ids_across_calls(pipe, tmp_path):
    cfg = DiffusionHarvestConfig(
        hook_point="transformer_blocks.0@image", tokens_per_step=5, steps=(1, 3), seed=3
    )
    with StoreWriter(tmp_path, {"model": "tiny-flux", "hook_point": cfg.hook_point, "d": 32}) as w:
        harvest_pipeline(pipe, [_kwargs(1), _kwargs(2, n=1)], cfg, w, quiet=True)
    acts, meta = _rows(tmp_path)
    assert len(acts) == 2 * 5 * 2 + 1 * 5 * 2  # 2 steps in window x 5 tokens x images
    ref1, ref2 = (
        _reference(pipe, "transformer_blocks.0", _kwargs(1)),
        _reference(pipe, "transformer_blocks.0", _kwargs(2, n=1)),
    )
    assert set(meta["doc_id"].tolist()) == {0, 1, 2}
    step_of_t = {r[0]: i for i, r in enumerate(ref1)}
    for row in range(len(acts)):
        doc, pos, t = int(meta["doc_id"][row]), int(meta["position"][row]), float(meta["timestep"][row])
        step = step_of_t[t]
        assert step in (1, 2)
        image = ref1[step][2][doc] if doc < 2 else ref2[step][2][doc - 2]
        torch.testing.assert_close(acts[row], image[pos], rtol=1e-6, atol=1e-6)
    # 5 distinct tokens per image per step
    for doc in range(3):
        for t in set(meta["timestep"].tolist()):
            sel = (meta["doc_id"] == doc) & (meta["timestep"] == t)
            assert sel.sum() == 5 and meta["position"][sel].unique().numel() == 5
