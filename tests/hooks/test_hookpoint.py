import pytest

from saekit.errors import HookPointError
from saekit.hooks import HookPoint, resolve_module


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("model.layers.15", HookPoint("model.layers.15", "out", None)),
        ("model.layers.15:in", HookPoint("model.layers.15", "in", None)),
        ("transformer_blocks.3@image", HookPoint("transformer_blocks.3", "out", "image")),
        ("single_transformer_blocks.0:in@1", HookPoint("single_transformer_blocks.0", "in", 1)),
        ("blocks.2:out@text", HookPoint("blocks.2", "out", "text")),
    ],
)
def test_parse(spec, expected):
    hp = HookPoint.parse(spec)
    assert hp == expected
    assert HookPoint.parse(str(hp)) == hp


def test_str_is_canonical():
    assert str(HookPoint.parse("blocks.2:out@text")) == "blocks.2@text"
    assert str(HookPoint.parse("model.layers.15:in@image")) == "model.layers.15:in@image"


@pytest.mark.parametrize("bad", ["model..layers", "model.layers.15:sideways", "a@b@c", ".x", "x.", "a b"])
def test_parse_rejects(bad):
    with pytest.raises(HookPointError, match="cannot parse"):
        HookPoint.parse(bad)


def test_layer_property():
    assert HookPoint.parse("model.layers.15").layer == 15
    assert HookPoint.parse("transformer.norm").layer is None


def test_resolve_module_and_suggestions(tiny_llama):
    assert resolve_module(tiny_llama, "model.layers.2") is tiny_llama.model.layers[2]
    assert resolve_module(tiny_llama, "") is tiny_llama
    with pytest.raises(HookPointError, match=r"Did you mean: .*model\.layers\.2") as err:
        resolve_module(tiny_llama, "model.layer.2")
    assert "LlamaForCausalLM" in str(err.value)
    with pytest.raises(HookPointError, match="Did you mean"):
        resolve_module(tiny_llama, "model.layers.99")
