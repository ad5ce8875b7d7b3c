"""Cached generation equals recomputing the whole sequence, and uses the transformers version's own names."""

import warnings

import torch

from saekit.steer.generate import GenerationConfig, generate_ids


def test_cached_greedy_generation_matches_full_recompute_without_deprecation_warnings(tiny_lm):
    model = tiny_lm.model.eval()
    prompt = torch.tensor([[3, 7, 11, 5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the old argument name warns in transformers 5.x
        got = generate_ids(model, prompt, GenerationConfig(max_new_tokens=6, stop_at_eos=False))
    ids = prompt
    with torch.no_grad():
        for _ in range(6):  # reference: argmax of a full forward over everything so far, no cache
            nxt = model(input_ids=ids, use_cache=False).logits[:, -1].argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], 1)
    assert torch.equal(got, ids[:, prompt.shape[1] :])

