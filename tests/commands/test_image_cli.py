"""Image models through the user-facing commands: `load_model` dispatch, `saekit harvest` on a tiny
CLIP and a tiny FLUX pipeline, and `saekit steer` (the image path) on the tiny pipeline.

Everything is built offline from configs and saved with `save_pretrained`, so the commands load it
by path like a user's folder. The tiny FluxPipeline has no text encoders/tokenizers (they would need
hub files): it is driven with `--prompt-embeds`. References are plain `output_hidden_states`
indexing (CLIP) and raw torch hooks on the block and the transformer's timestep input (FLUX)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from saekit.cli import main as cli
from saekit.data.store import ActivationStore
from saekit.errors import ModelLoadError, SAEConfigError

torch.set_num_threads(2)
VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}
TEXT_LEN, SIDE, STEPS = 8, 16, 3


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from saekit.models.flux import tiny_flux_pipeline
    from saekit.sae import SAEConfig, build
    from saekit.sae.io import save_sae

    root = tmp_path_factory.mktemp("image_cli")
    torch.manual_seed(0)
    clip = CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()
    clip.save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        root / "clip"
    )
    tiny_flux_pipeline(seed=0, num_layers=1, num_single_layers=1).save_pretrained(root / "flux")
    g = torch.Generator().manual_seed(0)
    save_file(
        {
            "prompt_embeds": torch.randn(3, TEXT_LEN, 32, generator=g),
            "pooled_prompt_embeds": torch.randn(3, 32, generator=g),
        },
        root / "embeds.safetensors",
    )
    save_file(
        {
            "prompt_embeds": torch.randn(1, TEXT_LEN, 32, generator=g),
            "pooled_prompt_embeds": torch.randn(1, 32, generator=g),
            "negative_prompt_embeds": torch.randn(1, TEXT_LEN, 32, generator=g),
            "negative_pooled_prompt_embeds": torch.randn(1, 32, generator=g),
        },
        root / "embeds_cfg.safetensors",
    )
    save_sae(build(SAEConfig(d_in=32, d_sae=64, arch="topk", k=8), seed=1), root / "sae")
    return root


def _rows(folder):
    store = ActivationStore.open(folder)
    acts, metas = zip(*store.iter_rows_with_meta(100_000))
    return torch.cat(acts), {k: torch.cat([m[k] for m in metas]) for k in metas[0]}


# -- load_model dispatch ----------------------------------------------------------------------------


def test_model_kind_by_name_and_folder(folders, tmp_path):
    from saekit.models.load import model_kind

    assert model_kind(str(folders / "clip")) == "clip"
    assert model_kind(str(folders / "flux")) == "diffusers"
    assert model_kind("openai/clip-vit-large-patch14") == "clip"
    assert model_kind("black-forest-labs/FLUX.1-schnell") == "diffusers"
    assert model_kind("smollm2") == "lm" and model_kind("HuggingFaceTB/SmolLM2-135M") == "lm"
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert model_kind(str(tmp_path / "llama")) == "lm"


def test_load_model_clip_folder_is_the_saved_model(folders):
    from transformers import CLIPVisionModel

    from saekit.models import load_model
    from saekit.models.clip import LoadedClip

    got = load_model(str(folders / "clip"), dtype="float32")
    assert (
        isinstance(got, LoadedClip) and isinstance(got.model, CLIPVisionModel) and got.processor is not None
    )
    ref = CLIPVisionModel.from_pretrained(folders / "clip").eval()
    pv = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(
        got.model(pixel_values=pv).pooler_output, ref(pixel_values=pv).pooler_output, rtol=0, atol=0
    )
    with pytest.raises(ModelLoadError, match="only the vision tower"):
        load_model(str(folders / "clip"), clip_tower="text")


def test_load_model_flux_folder_without_text_encoders(folders):
    from diffusers import FluxPipeline

    from saekit.models import load_model
    from saekit.models.flux import tiny_flux_pipeline

    pipe = load_model(str(folders / "flux"), dtype="float32", device="cpu")
    assert (
        isinstance(pipe, FluxPipeline)
        and pipe.text_encoder is None
        and pipe.transformer.dtype == torch.float32
    )
    ref = tiny_flux_pipeline(seed=0, num_layers=1, num_single_layers=1).transformer.state_dict()
    got = pipe.transformer.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


@pytest.mark.parametrize("name", ["/no/such/clip-model", "/no/such/FLUX.1-folder"])
def test_unfetchable_image_model_says_no_network_and_local_folder(name):
    from saekit.models import load_model

    with pytest.raises(ModelLoadError, match="no network.*local folder"):
        load_model(name, dtype="float32")


# -- saekit harvest: CLIP ---------------------------------------------------------------------------


def _clip_reference(folders, n_images=None):
    from transformers import CLIPImageProcessor, CLIPVisionModel

    from saekit.data.images import skimage_samples

    model = CLIPVisionModel.from_pretrained(folders / "clip").eval()
    proc = CLIPImageProcessor.from_pretrained(folders / "clip")
    images = skimage_samples()[:n_images]
    pv = proc(images=[i.pixels for i in images], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model(pixel_values=pv, output_hidden_states=True).hidden_states


def test_cli_harvest_clip_skimage_rows_equal_penultimate_cls(folders, tmp_path):
    args = [
        "harvest",
        "--model",
        str(folders / "clip"),
        "--images",
        "skimage",
        "--out",
        str(tmp_path / "s"),
        "--dtype",
        "float32",
        "--batch-size",
        "4",
        "--shard-rows",
        "5",
        "--quiet",
    ]
    assert cli(args) == 0
    acts, meta = _rows(tmp_path / "s")
    hs = _clip_reference(folders)
    torch.testing.assert_close(acts, hs[-2][:, 0, :], rtol=1e-5, atol=1e-5)
    assert meta["doc_id"].tolist() == list(range(len(acts))) and (meta["position"] == 0).all()  # CLS = 0
    m = ActivationStore.open(tmp_path / "s").manifest
    assert m["site"] == "vision:-2:cls" and m["hook_point"] == "encoder.layers.1" and m["complete"]
    # another site: every token of the last layer
    assert (
        cli(
            args[:-9]
            + [
                "--site",
                "vision:-1:all",
                "--tokens",
                "30",
                "--out",
                str(tmp_path / "all"),
                "--dtype",
                "float32",
                "--quiet",
            ]
        )
        == 0
    )
    acts, meta = _rows(tmp_path / "all")
    flat = hs[-1].reshape(-1, 32)[:30]
    torch.testing.assert_close(acts, flat, rtol=1e-5, atol=1e-5)
    assert meta["position"][:17].tolist() == list(range(17)) and meta["doc_id"][17] == 1


def test_clip_harvest_resumes_to_an_identical_store(folders, tmp_path, monkeypatch):
    import saekit.models.clip as clip_mod
    from saekit.data.harvest import ClipHarvestConfig, harvest

    cfg = {
        "model": str(folders / "clip"),
        "images": "skimage",
        "dtype": "float32",
        "batch_size": 3,
        "shard_rows": 4,
        "quiet": True,
    }
    harvest(ClipHarvestConfig(out=tmp_path / "ref", **cfg))
    real, calls = clip_mod.clip_activations, []

    def dies_on_fourth(*a, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(clip_mod, "clip_activations", dies_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        harvest(ClipHarvestConfig(out=tmp_path / "cut", **cfg))
    monkeypatch.setattr(clip_mod, "clip_activations", real)
    assert not ActivationStore.open(tmp_path / "cut", allow_incomplete=True).manifest["complete"]
    harvest(ClipHarvestConfig(out=tmp_path / "cut", **cfg))

    def files(p):
        return {f.name: f.read_bytes() for f in sorted(Path(p).iterdir())}

    assert files(tmp_path / "cut") == files(tmp_path / "ref")


class _WordTokenizer:
    """Offline stand-in for the CLIP tokenizer: bos 98, one id per word, eos 99, right padding with 0."""

    def __call__(self, texts, padding=True, truncation=True, return_tensors="pt"):
        rows = [[98] + [1 + sum(map(ord, w)) % 90 for w in t.split()][:12] + [99] for t in texts]
        T = max(map(len, rows))
        ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def test_clip_text_tower_harvest_from_caption_file(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModel

    from saekit.data.harvest import ClipHarvestConfig, harvest
    from saekit.models.clip import LoadedClip

    torch.manual_seed(0)
    txt = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=100,
            max_position_embeddings=16,
            eos_token_id=99,
            bos_token_id=98,
            pad_token_id=0,
        )
    ).eval()
    caps = ["a cat on a mat", "two dogs", "the moon at night over water", "red", "a b c"]
    (tmp_path / "caps.jsonl").write_text("\n".join(json.dumps({"caption": c}) for c in caps) + "\n")
    loaded = LoadedClip(txt, None, _WordTokenizer(), "tiny-clip-text")
    harvest(
        ClipHarvestConfig(
            model="tiny-clip-text",
            captions=tmp_path / "caps.jsonl",
            site="text:-2:eos",
            batch_size=2,
            shard_rows=3,
            out=tmp_path / "t",
            quiet=True,
        ),
        loaded=loaded,
    )
    acts, meta = _rows(tmp_path / "t")
    enc = _WordTokenizer()(caps)
    with torch.no_grad():
        hs = txt(**enc, output_hidden_states=True).hidden_states
    eos = (enc["input_ids"] == 99).int().argmax(-1)
    torch.testing.assert_close(acts, hs[-2][torch.arange(5), eos], rtol=1e-5, atol=1e-5)
    assert meta["doc_id"].tolist() == [0, 1, 2, 3, 4]


def test_parse_clip_site_grammar():
    from saekit.data.harvest import parse_clip_site
    from saekit.errors import HookPointError
    from saekit.models.clip import SEED_SITE, ClipSite

    assert parse_clip_site(None) == SEED_SITE == parse_clip_site("vision:-2:cls")
    assert parse_clip_site("text:-1") == ClipSite("text", -1, "eos")
    assert parse_clip_site("vision:3:5") == ClipSite("vision", 3, 5)
    assert parse_clip_site("text:pooled").token == "pooled"
    for bad in ("vision", "vision:x:cls", "vision:-2:eos", "video:-2:cls"):
        with pytest.raises(HookPointError):
            parse_clip_site(bad)


def test_flags_of_another_model_kind_are_refused(folders, tmp_path, capsys):
    """Each kind has its own flags: a flag of another kind is an error, not silently ignored."""
    from saekit.data.harvest import ClipHarvestConfig

    flux = [
        "harvest",
        "--model",
        str(folders / "flux"),
        "--prompt-embeds",
        str(folders / "embeds.safetensors"),
    ]
    with pytest.raises(SystemExit):
        cli(flux + ["--site", "vision:-2:cls", "--out", str(tmp_path / "a")])
    assert "--site" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["harvest", "--model", "smollm2", "--images", "skimage", "--out", str(tmp_path / "b")])
    assert "--images" in capsys.readouterr().err
    with pytest.raises(SAEConfigError, match="--captions"):
        ClipHarvestConfig(
            model=str(folders / "clip"), images="skimage", site="text:-1:eos", out=tmp_path / "d"
        )


# -- saekit harvest: FLUX ---------------------------------------------------------------------------


def _record_block_and_timesteps(pipe, block, **kwargs):
    """Run the pipeline once; return every call's block outputs and the transformer's timestep inputs."""
    seen, ts = [], []
    h1 = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: ts.append(float(kw["timestep"].reshape(-1)[0])), with_kwargs=True
    )
    h2 = block.register_forward_hook(lambda m, a, o: seen.append([x.detach().clone() for x in o]))
    try:
        pipe(**kwargs)
    finally:
        h1.remove()
        h2.remove()
    return seen, ts


def test_cli_harvest_flux_records_stream_and_timesteps(folders, tmp_path):
    from saekit.models import load_model

    out = tmp_path / "f"
    assert (
        cli(
            [
                "harvest",
                "--model",
                str(folders / "flux"),
                "--hook-point",
                "transformer_blocks.0@text",
                "--prompt-embeds",
                str(folders / "embeds.safetensors"),
                "--steps",
                "1-2",
                "--num-inference-steps",
                str(STEPS),
                "--tokens-per-step",
                "0",
                "--height",
                str(SIDE),
                "--width",
                str(SIDE),
                "--batch-size",
                "2",
                "--dtype",
                "float32",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    acts, meta = _rows(out)
    # reference: the same generations (seed + batch index) with raw hooks
    pipe = load_model(str(folders / "flux"), dtype="float32", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    block = pipe.transformer.get_submodule("transformer_blocks.0")
    from safetensors.torch import load_file

    emb = load_file(str(folders / "embeds.safetensors"))
    ref_rows, ref_t, ref_doc = [], [], []
    for b, rows in enumerate([slice(0, 2), slice(2, 3)]):
        seen, ts = _record_block_and_timesteps(
            pipe,
            block,
            prompt_embeds=emb["prompt_embeds"][rows],
            pooled_prompt_embeds=emb["pooled_prompt_embeds"][rows],
            num_inference_steps=STEPS,
            height=SIDE,
            width=SIDE,
            guidance_scale=3.5,
            output_type="latent",
            generator=[torch.Generator().manual_seed(i) for i in range(3)[rows]],  # seed + image index
        )
        for step in (1, 2):
            text = next(
                x for x in seen[step] if x.shape[1] == TEXT_LEN
            )  # text stream identified by its length
            ref_rows.append(text.reshape(-1, 32))
            ref_t += [ts[step]] * text.shape[0] * TEXT_LEN
            ref_doc += [2 * b + i for i in range(text.shape[0]) for _ in range(TEXT_LEN)]
    torch.testing.assert_close(acts, torch.cat(ref_rows), rtol=1e-5, atol=1e-5)
    assert meta["timestep"].tolist() == pytest.approx(ref_t) and len(set(ref_t)) == 2
    assert meta["doc_id"].tolist() == ref_doc
    m = ActivationStore.open(out).manifest
    assert m["stream"] == "text" and m["steps"] == [1, 2] and m["complete"]


class _DiesOnCall:
    """A pipeline wrapper whose n-th generation raises, like a user's Ctrl-C mid-harvest."""

    def __init__(self, pipe, n: int):
        self.pipe, self.transformer, self.n, self.calls = pipe, pipe.transformer, n, 0

    def set_progress_bar_config(self, **kw):
        self.pipe.set_progress_bar_config(**kw)

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kw):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.pipe(**kw)


def test_flux_harvest_samples_tokens_and_resumes_identically(folders, tmp_path):
    from saekit.data.harvest import DiffusionHarvestConfig, harvest
    from saekit.models import load_model

    pipe = load_model(str(folders / "flux"), dtype="float32", device="cpu")
    cfg = {
        "model": str(folders / "flux"),
        "hook_point": "single_transformer_blocks.0@image",
        "prompt_embeds": folders / "embeds.safetensors",
        "num_inference_steps": STEPS,
        "height": SIDE,
        "width": SIDE,
        "tokens_per_step": 5,
        "batch_size": 1,
        "shard_rows": 4,
        "dtype": "float32",
        "quiet": True,
    }
    harvest(DiffusionHarvestConfig(out=tmp_path / "ref", **cfg), loaded=pipe)
    acts, meta = _rows(tmp_path / "ref")
    assert len(acts) == 3 * STEPS * 5 and meta["timestep"].unique().numel() == STEPS
    for doc in range(3):
        for t in meta["timestep"].unique():
            sel = (meta["doc_id"] == doc) & (meta["timestep"] == t)
            assert meta["position"][sel].unique().numel() == 5  # 5 distinct image tokens per image per step
    with pytest.raises(KeyboardInterrupt):
        harvest(DiffusionHarvestConfig(out=tmp_path / "cut", **cfg), loaded=_DiesOnCall(pipe, 3))
    assert (
        ActivationStore.open(tmp_path / "cut", allow_incomplete=True).manifest["count"] == 28
    )  # 30 rows, 4 per shard
    harvest(DiffusionHarvestConfig(out=tmp_path / "cut", **cfg), loaded=pipe)

    def files(p):
        return {f.name: f.read_bytes() for f in sorted(Path(p).iterdir())}

    assert files(tmp_path / "cut") == files(tmp_path / "ref")


# -- saekit steer on a diffusers pipeline -----------------------------------------------------------


def _halves(path):
    a = np.asarray(Image.open(path).convert("RGB"))
    w = a.shape[1] // 2
    return a[:, :w], a[:, w:]


def _steer(args):
    return cli(["steer", *args])


def test_image_steer_side_by_side(folders, tmp_path):
    from saekit.steer.image.run import steer_target

    base = [
        "--model",
        str(folders / "flux"),
        "--sae",
        str(folders / "sae"),
        "--prompt-embeds",
        str(folders / "embeds.safetensors"),
        "--num-inference-steps",
        str(STEPS),
        "--height",
        str(SIDE),
        "--width",
        str(SIDE),
        "--dtype",
        "float32",
        "--quiet",
    ]
    assert steer_target(str(folders / "flux"), str(folders / "sae")) == "image"
    assert steer_target("smollm2", "x") == "lm"
    loop = ["--hook-point", "transformer_blocks.0", "--stream", "image"]
    loop += ["--feature", "3", "--method", "additive"]
    assert _steer(base + loop + ["--steps", "0-1", "--strength", "30", "--out", str(tmp_path / "s.png")]) == 0
    un, st = _halves(tmp_path / "s.png")
    assert un.shape == (SIDE, SIDE, 3) and (un != st).any()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s_unsteered.png").convert("RGB")), un)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s_steered.png").convert("RGB")), st)
    # zero edits: additive 0 in the loop, and conditioning clamp to the current values
    assert _steer(base + loop + ["--strength", "0", "--out", str(tmp_path / "z.png")]) == 0
    z_un, z_st = _halves(tmp_path / "z.png")
    assert np.array_equal(z_un, z_st) and np.array_equal(z_un, un)
    assert (
        _steer(
            base
            + [
                "--conditioning",
                "both",
                "--feature",
                "3",
                "--strength",
                "current",
                "--out",
                str(tmp_path / "c.png"),
            ]
        )
        == 0
    )
    c_un, c_st = _halves(tmp_path / "c.png")
    assert np.array_equal(c_un, c_st)
    # no unconditional branch without true CFG: refused with the fix
    assert (
        _steer(base + loop + ["--strength", "1", "--branch", "opposite", "--out", str(tmp_path / "o.png")])
        == 1
    )
    assert not (tmp_path / "o.png").exists()


def test_image_steer_true_cfg_branches(folders, tmp_path):
    """With true CFG, --branch decides what the unconditional call gets; a zero edit stays exact."""
    base = [
        "--model",
        str(folders / "flux"),
        "--sae",
        str(folders / "sae"),
        "--prompt-embeds",
        str(folders / "embeds_cfg.safetensors"),
        "--true-cfg-scale",
        "2",
        "--num-inference-steps",
        "2",
        "--height",
        str(SIDE),
        "--width",
        str(SIDE),
        "--dtype",
        "float32",
        "--quiet",
        "--hook-point",
        "transformer_blocks.0@image",
        "--feature",
        "5",
        "--method",
        "additive",
    ]
    pics = {}
    for branch, strength in (("cond", "0"), ("cond", "30"), ("both", "30"), ("opposite", "30")):
        out = tmp_path / f"{branch}{strength}.png"
        assert _steer(base + ["--branch", branch, "--strength", strength, "--out", str(out)]) == 0
        pics[branch, strength] = _halves(out)
    un = pics["cond", "0"][0]
    assert np.array_equal(pics["cond", "0"][1], un)
    steered = [pics[k][1] for k in (("cond", "30"), ("both", "30"), ("opposite", "30"))]
    assert all((s != un).any() for s in steered)
    assert (
        (steered[0] != steered[1]).any()
        and (steered[0] != steered[2]).any()
        and (steered[1] != steered[2]).any()
    )
