import torch
from transformers import LlamaConfig, LlamaForCausalLM

from saekit.analysis.logits import find_unembed, logit_effects

torch.set_num_threads(2)


def _tiny_llama():
    cfg = LlamaConfig(
        vocab_size=6,
        hidden_size=4,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.model.norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0]))
        model.lm_head.weight.copy_(
            torch.tensor(
                [
                    [1.0, 0, 0, 0],  # token 0 reads channel 0
                    [0, 1.0, 0, 0],  # token 1 reads channel 1 (gamma 2)
                    [0, 0, 1.0, 0],  # token 2 reads channel 2 (gamma 0.5)
                    [-1.0, 0, 0, 0],  # token 3 anti channel 0
                    [0, 0, 0, 1.0],
                    [0, 0, 0, 0],
                ]
            )
        )
    return model


def test_known_answer_on_hand_built_llama():
    model = _tiny_llama()
    ue = find_unembed(model)
    dirs = torch.tensor([[1.0, 0, 0, 0], [0, 0.6, 0.8, 0], [0, 0, 0, -1.0]])
    effects = logit_effects(dirs, ue, [0, 1, 2], k=2)
    # feature 0: logits = [1, 0, 0, -1, 0, 0]
    assert effects[0].promoted[0] == (0, 1.0)
    assert effects[0].suppressed[0] == (3, -1.0)
    # feature 1: gamma*d = [0, 1.2, 0.4, 0] -> token 1: 1.2, token 2: 0.4
    assert [t for t, _ in effects[1].promoted] == [1, 2]
    assert abs(effects[1].promoted[0][1] - 1.2) < 1e-6 and abs(effects[1].promoted[1][1] - 0.4) < 1e-6
    # feature 2 suppresses token 4 by exactly 1
    assert effects[2].suppressed[0] == (4, -1.0)


def test_ranking_matches_full_model_direct_path():
    """Adding a small multiple of d to the final residual changes logits in the predicted order."""
    model = _tiny_llama()
    ue = find_unembed(model)
    torch.manual_seed(0)
    d = torch.randn(1, 4)
    d = d / d.norm()
    eff = logit_effects(d, ue, [0], k=6)[0]
    x = torch.ones(4)  # a residual with rms 1, so the dropped 1/rms factor is exactly 1
    base = model.lm_head(model.model.norm(x))
    moved = model.lm_head(model.model.norm(x + 1e-3 * d[0]))
    delta = (moved - base).detach()
    # first-order change at rms(x)=1: gamma*(d - x * <x,d>/d_model) — the direction term dominates ranking
    pred = torch.tensor([v for _, v in sorted(eff.promoted)])
    x_term = model.lm_head(model.model.norm.weight * x).detach() * (x @ d[0]) / 4
    torch.testing.assert_close(delta / 1e-3, pred - x_term, atol=1e-2, rtol=1e-2)
