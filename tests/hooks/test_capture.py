"""capture() against references: output_hidden_states, manual forward, early stop."""

import pytest
import torch

from saekit.errors import ShapeError
from saekit.hooks import capture, intervene


def _ids(n=2, t=7, vocab=64):
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(3))


def test_capture_equals_output_hidden_states(tiny_llama):
    ids = _ids()
    with torch.no_grad():
        ref = tiny_llama(ids, output_hidden_states=True).hidden_states
        with capture(tiny_llama, ["model.layers.1", "model.layers.2", "model.embed_tokens"]) as cap:
            tiny_llama(ids)
    # hidden_states[i+1] is the output of decoder layer i; hidden_states[0] the embeddings
    torch.testing.assert_close(cap.activations["model.layers.1"], ref[2], rtol=0, atol=0)
    torch.testing.assert_close(cap.activations["model.layers.2"], ref[3], rtol=0, atol=0)
    torch.testing.assert_close(cap.activations["model.embed_tokens"], ref[0], rtol=0, atol=0)


def test_input_equals_previous_output(tiny_llama):
    ids = _ids()
    with torch.no_grad(), capture(tiny_llama, ["model.layers.2:in", "model.layers.1"]) as cap:
        tiny_llama(ids)
    torch.testing.assert_close(
        cap.activations["model.layers.2:in"], cap.activations["model.layers.1"], rtol=0, atol=0
    )


def test_stop_after_last_identical_and_skips_later_layers(tiny_llama):
    ids = _ids()
    calls = []
    handle = tiny_llama.model.layers[3].register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            with capture(tiny_llama, "model.layers.1") as full:
                tiny_llama(ids)
            n_full = len(calls)
            with capture(tiny_llama, "model.layers.1", stop_after_last=True) as early:
                out = tiny_llama(ids)
                after_call = True
    finally:
        handle.remove()
    assert n_full == 1 and len(calls) == 1, "layer 3 must not run when stopping after layer 1"
    assert out is None and after_call and early.stopped
    torch.testing.assert_close(
        early.activations["model.layers.1"], full.activations["model.layers.1"], rtol=0, atol=0
    )
    # hooks removed and forward restored afterwards
    assert "forward" not in tiny_llama.__dict__
    assert tiny_llama(ids).logits.shape == (2, 7, 64)


def test_stop_when_body_calls_submodule(tiny_llama):
    ids = _ids()
    with torch.no_grad(), capture(tiny_llama, "model.layers.0", stop_after_last=True) as cap:
        tiny_llama.model(ids)
        pytest.fail("StopForward should have ended the body")
    assert cap.stopped and cap.activations["model.layers.0"].shape == (2, 7, 32)


def test_intervene_output_changes_downstream(tiny_llama):
    ids = _ids()
    with torch.no_grad():
        base = tiny_llama(ids).logits
        with intervene(tiny_llama, "model.layers.1", lambda x: x):
            same = tiny_llama(ids).logits
        with (
            intervene(tiny_llama, "model.layers.1", lambda x: x * 0),
            capture(tiny_llama, "model.layers.1") as cap,
        ):
            zeroed = tiny_llama(ids).logits
        after = tiny_llama(ids).logits
    torch.testing.assert_close(same, base, rtol=0, atol=0)
    assert torch.count_nonzero(cap.activations["model.layers.1"]) == 0
    assert not torch.allclose(zeroed, base)
    torch.testing.assert_close(after, base, rtol=0, atol=0)


def test_intervene_input_equals_output_intervention(tiny_llama):
    ids = _ids()
    shift = torch.randn(32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with intervene(tiny_llama, "model.layers.1", lambda x: x + shift):
            a = tiny_llama(ids).logits
        with intervene(tiny_llama, "model.layers.2:in", lambda x: x + shift):
            b = tiny_llama(ids).logits
    torch.testing.assert_close(a, b)


def test_intervene_shape_mismatch(tiny_llama):
    with pytest.raises(ShapeError, match="shaped like its input"):
        with torch.no_grad(), intervene(tiny_llama, "model.layers.1", lambda x: x[:, :1]):
            tiny_llama(_ids())
