"""`--offload none|model|sequential`: diffusers' CPU offload, refused clearly where it cannot work.

Offload needs CUDA and `accelerate`; both refusals must come before any weights are read (FLUX takes
minutes to load). The placement itself is checked on a stand-in pipeline that records what was asked of
it, and for real on a GPU (`cuda` marker) by comparing an offloaded run with a plain one."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from saekit.errors import ModelLoadError
from saekit.models.offload import check_offload, place_pipeline

CUDA = torch.device("cuda")


class _Recorder:
    def __init__(self):
        self.calls = []

    def to(self, device):
        self.calls.append(("to", device))
        return self

    def enable_model_cpu_offload(self, device=None):
        self.calls.append(("model", device))

    def enable_sequential_cpu_offload(self, device=None):
        self.calls.append(("sequential", device))


@pytest.mark.parametrize("choice", ["model", "sequential"])
def test_offload_on_the_cpu_is_refused_with_the_fix(choice):
    with pytest.raises(ModelLoadError, match=f"--offload {choice} .*CUDA.*--offload none"):
        check_offload(choice, torch.device("cpu"))
    with pytest.raises(ModelLoadError, match="not one of none, model, sequential"):
        check_offload("disk", CUDA)


def test_placement_calls_the_diffusers_mechanism(monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", types.ModuleType("accelerate"))
    for choice, expected in (("none", "to"), ("model", "model"), ("sequential", "sequential")):
        pipe = _Recorder()
        assert place_pipeline(pipe, CUDA, choice) is pipe and pipe.calls == [(expected, CUDA)]
    monkeypatch.setitem(sys.modules, "accelerate", None)  # not installed
    with pytest.raises(ModelLoadError, match="needs the `accelerate` package"):
        place_pipeline(_Recorder(), CUDA, "model")


def test_loaders_refuse_before_reading_weights(monkeypatch, tmp_path):
    import diffusers

    from saekit.models import load_model
    from saekit.models.flux import load_flux
    from saekit.models.kandinsky import load_kandinsky

    def never(*a, **kw):
        raise AssertionError("weights were read before the offload check")

    monkeypatch.setattr(diffusers.FluxPipeline, "from_pretrained", never)
    with pytest.raises(ModelLoadError, match="--offload model"):
        load_flux("black-forest-labs/FLUX.1-schnell", device="cpu", offload="model")
    with pytest.raises(ModelLoadError, match="--offload sequential"):
        load_model("black-forest-labs/FLUX.1-schnell", device="cpu", offload="sequential")
    with pytest.raises(ModelLoadError, match="--offload model"):
        load_kandinsky(device="cpu", offload="model")
    with pytest.raises(ModelLoadError, match="applies to diffusers pipelines"):
        load_model("smollm2", offload="model")


def test_cli_image_steer_refuses_offload_on_cpu(tmp_path, capsys):
    from saekit.cli import main as cli
    from saekit.sae import SAEConfig, build
    from saekit.sae.io import save_sae

    save_sae(build(SAEConfig(d_in=32, d_sae=64, arch="topk", k=4), seed=0), tmp_path / "sae")
    args = ["steer", "--model", "black-forest-labs/FLUX.1-schnell", "--sae", str(tmp_path / "sae")]
    args += ["--feature", "1", "--prompt", "x", "--device", "cpu", "--offload", "model", "--quiet"]
    assert cli([*args, "--out", str(tmp_path / "o.png")]) == 1
    assert "--offload model moves weights" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("choice", ["model", "sequential"])
def test_offloaded_generation_matches_the_plain_one_on_cuda(choice):
    pytest.importorskip("accelerate")
    from saekit.models.flux import tiny_flux_pipeline

    def run(pipe):
        g = torch.Generator("cpu").manual_seed(0)
        emb = torch.randn(1, 6, 32, generator=g), torch.randn(1, 32, generator=g)
        kw = dict(num_inference_steps=2, height=16, width=16, output_type="pt")
        return pipe(prompt_embeds=emb[0], pooled_prompt_embeds=emb[1], generator=g, **kw).images.cpu()

    plain = run(place_pipeline(tiny_flux_pipeline(seed=0), CUDA, "none"))
    offloaded = run(place_pipeline(tiny_flux_pipeline(seed=0), CUDA, choice))
    torch.testing.assert_close(offloaded, plain, rtol=1e-4, atol=1e-4)
