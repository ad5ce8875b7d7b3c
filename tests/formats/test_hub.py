"""`hf:ORG/REPO[/PATH][@REVISION]` through the real huggingface_hub code, offline, on a hand-built cache.

The cache is laid out exactly as huggingface_hub writes and reads it (`HF_HUB_CACHE=<tmp>`):
`models--ORG--REPO/refs/<branch or tag>` holding a commit hash, `snapshots/<commit>/<files>` symlinks
to `blobs/<sha256>`. Each format's fixture is written by that format's own test writer into a plain
folder and into the cache; loading the `hf:` spec with `HF_HUB_OFFLINE=1` must give the same SAE as
loading the plain folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import pytest
import torch

import saekit
from saekit.errors import ModelLoadError, SAEFormatError
from saekit.formats import hub
from saekit.formats.hub import HFSpec, hub_model_name, parse_hf_spec, resolve_hf
from saekit.sae import SAEConfig, build

from .conftest import D_IN, D_SAE, acts
from .test_dictionary_learning import linear_ae, write_dl
from .test_reny import linear_tensors, write_reny
from .test_saelens import base_tensors, write_saelens
from .test_saev import header, saev_state, write_saev
from .test_single_files import gytdau_state
from .test_sparsify import sparsify_tensors, write_sparsify


def commit_of(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def put_in_cache(cache: Path, repo_id: str, source: Path, commit: str, refs: tuple[str, ...] = ("main",)):
    """The files under `source` as commit `commit` of `repo_id` in an HF hub cache, tagged `refs`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for f in sorted(p for p in source.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / f.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # huggingface_hub writes the hash without a newline
    return repo


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache, offline: only what the tests put there can be read."""
    folder = tmp_path / "hf-cache"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


# -- every format: (repo id, the repo's files written into `root`, the spec's PATH, the local path) --------
def _saelens(root: Path) -> Path:
    write_saelens(root / "blocks.5.hook_resid_pre", base_tensors(seed=9), architecture="standard")
    return write_saelens(root / "blocks.3.hook_resid_pre", base_tensors(seed=2), architecture="topk", k=4)


def _sparsify(root: Path) -> Path:
    write_sparsify(root / "layers.0", sparsify_tensors(seed=0))
    return write_sparsify(root / "layers.1", sparsify_tensors(seed=5))


def _reny(root: Path) -> Path:
    return write_reny(root, linear_tensors(seed=3), k=4)


def _dl_folder(root: Path) -> Path:
    write_dl(root / "resid_post_layer_3" / "trainer_1", linear_ae(7), "AutoEncoder")
    return write_dl(root / "resid_post_layer_3" / "trainer_0", linear_ae(4), "AutoEncoder")


def _dl_file(root: Path) -> Path:
    return _dl_folder(root) / "ae.pt"


def _gytdau(root: Path) -> Path:
    root.mkdir(parents=True)
    torch.save(gytdau_state(seed=1), root / "sparse_autoencoder_64.pth")
    torch.save(gytdau_state(seed=6), root / "sparse_autoencoder_128.pth")
    return root / "sparse_autoencoder_128.pth"


def _saev(root: Path) -> Path:
    write_saev(root / "abc123" / "sae.pt", header(5, "TopK"), saev_state(seed=2))
    return write_saev(root / "def456" / "sae.pt", header(5, "Relu"), saev_state(seed=8)).parent


def _native(root: Path) -> Path:
    sae = build(SAEConfig(d_in=D_IN, d_sae=D_SAE, arch="topk", k=4), seed=11)
    sae.save(root / "layer_2")
    return root / "layer_2"


FORMATS = {
    "saelens": ("org/saelens-release", _saelens),
    "sparsify": ("EleutherAI/sae-tiny", _sparsify),
    "reny": ("re-n-y/cc3m-text-topk", _reny),
    "dictionary_learning folder": ("org/dl-saes", _dl_folder),
    "dictionary_learning ae.pt": ("org/dl-saes", _dl_file),
    "gytdau": ("gytdau/clip-sae-128", _gytdau),
    "saev": ("osunlp/saev-tiny", _saev),
    "saekit": ("org/native", _native),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_loads_from_the_cache_as_from_a_folder(tmp_path, cache, name):
    repo_id, write = FORMATS[name]
    root = tmp_path / "repo"
    local = write(root)
    repo = put_in_cache(cache, repo_id, root, commit_of(name))
    path = local.relative_to(root).as_posix()
    spec = f"hf:{repo_id}" + (f"/{path}" if path != "." else "")
    assert resolve_hf(spec) == repo / "snapshots" / commit_of(name) / local.relative_to(root)
    from_hub, from_folder = saekit.load(spec), saekit.load(local)
    assert from_hub.arch == from_folder.arch
    x = acts()
    assert torch.equal(from_hub.reconstruct(x), from_folder.reconstruct(x)), name
    assert torch.equal(from_hub.encode(x), from_folder.encode(x)), name


def test_revision_by_branch_tag_and_commit_hash(tmp_path, cache):
    old, new = tmp_path / "old", tmp_path / "new"
    write_saelens(old / "sae", base_tensors(seed=1), architecture="standard")
    write_saelens(new / "sae", base_tensors(seed=2), architecture="standard")
    put_in_cache(cache, "org/rev", old, commit_of("old"), refs=("v1.0",))
    put_in_cache(cache, "org/rev", new, commit_of("new"), refs=("main",))
    x = acts()
    want = {p: saekit.load(p / "sae").reconstruct(x) for p in (old, new)}
    by_hash = [(f"@{commit_of('old')}", old), (f"@{commit_of('new')}", new)]
    cases = [("", new), ("@main", new), ("@v1.0", old), *by_hash]
    for revision, folder in cases:
        spec = "hf:org/rev/sae" + revision
        assert torch.equal(saekit.load(spec).reconstruct(x), want[folder]), spec
    assert not torch.equal(want[old], want[new])


def test_offline_errors_name_repo_path_revision_and_the_fetch_command(tmp_path, cache):
    with pytest.raises(SAEFormatError) as exc:
        saekit.load("hf:org/absent/layers.3@v2")
    msg = str(exc.value)
    assert "repo org/absent" in msg and "path 'layers.3'" in msg and "revision v2" in msg
    assert "HF_HUB_OFFLINE" in msg and "`hf download org/absent --include 'layers.3/*' --revision v2`" in msg

    write_sparsify(tmp_path / "repo" / "layers.0", sparsify_tensors())
    put_in_cache(cache, "org/present", tmp_path / "repo", commit_of("p"))
    with pytest.raises(SAEFormatError) as exc:
        saekit.load("hf:org/present/layers.9")  # the repo is cached, the sub-folder is not
    msg = str(exc.value)
    assert f"commit {commit_of('p')}" in msg and "lacks 'layers.9'" in msg and "repo org/present" in msg
    assert "hf download org/present --include 'layers.9/*'" in msg
    fetch = r"hf download org/present --include 'layers.0/\*' --revision nope"
    with pytest.raises(SAEFormatError, match=rf"revision nope.*{fetch}"):
        saekit.load("hf:org/present/layers.0@nope")
    with pytest.raises(SAEFormatError, match="gytdau/x.*sparse_autoencoder_128.pth.*--include '\\*.json'"):
        saekit.load("hf:gytdau/x/sparse_autoencoder_128.pth")


def test_online_download_asks_only_for_the_named_files(tmp_path, monkeypatch):
    """What reaches `huggingface_hub.snapshot_download` when online (the download itself is theirs)."""
    import huggingface_hub

    calls = []
    snapshot = tmp_path / "snap"
    (snapshot / "layers.1").mkdir(parents=True)
    (snapshot / "w.pth").write_bytes(b"")

    def fake(repo_id, **kw):
        calls.append((repo_id, kw))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.setattr(hub, "offline", lambda: False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert resolve_hf("hf:org/r/layers.1@v2") == snapshot / "layers.1"
    assert resolve_hf("hf:org/r/w.pth") == snapshot / "w.pth"
    assert resolve_hf("hf:org/r") == snapshot
    assert [(r, kw["revision"], kw["allow_patterns"], kw["local_files_only"]) for r, kw in calls] == [
        ("org/r", "v2", ["layers.1/*"], False),
        ("org/r", None, ["w.pth", "*.json"], False),
        ("org/r", None, None, False),
    ]


def test_parse_hf_spec():
    assert parse_hf_spec("hf:org/repo") == HFSpec("org/repo", "", None)
    assert parse_hf_spec("hf:org/repo/") == HFSpec("org/repo", "", None)
    assert parse_hf_spec("hf:gytdau/clip-sae-128/sparse_autoencoder_128.pth") == HFSpec(
        "gytdau/clip-sae-128", "sparse_autoencoder_128.pth", None
    )
    spec = parse_hf_spec("hf:EleutherAI/sae-llama/layers.6.mlp@refs/pr/3")
    assert spec == HFSpec("EleutherAI/sae-llama", "layers.6.mlp", "refs/pr/3")
    assert str(spec) == "hf:EleutherAI/sae-llama/layers.6.mlp@refs/pr/3"
    assert parse_hf_spec("hf:o/r/a/b/ae@1000@main") == HFSpec("o/r", "a/b/ae@1000", "main")
    assert parse_hf_spec(PurePosixPath("hf:o/r@v1")) == HFSpec("o/r", "", "v1")
    for bad in ("org/repo", "hf:org", "hf:/repo", "hf:org/re po", "hf:org/repo@", "hf:org/repo/../x",
                "hf:org/repo//x", "hf:-org/repo", "hf:org/repo@a b"):  # fmt: skip
        with pytest.raises(SAEFormatError, match="hf:ORG/REPO"):
            parse_hf_spec(bad)
    with pytest.raises(ModelLoadError, match="not a hub spec"):
        parse_hf_spec("hf:org", error=ModelLoadError)


def test_allow_patterns_fetch_what_the_spec_names():
    assert HFSpec("o/r").allow_patterns() is None
    assert HFSpec("o/r", "blocks.3.hook_resid_pre").allow_patterns() == ["blocks.3.hook_resid_pre/*"]
    assert HFSpec("o/r", "l3/t0/ae.pt").allow_patterns() == ["l3/t0/ae.pt", "l3/t0/*.json"]
    assert HFSpec("o/r", "l3/sae_weights.safetensors").allow_patterns() == ["l3/*"]
    assert HFSpec("o/r", "cfg.json").allow_patterns() is None
    assert HFSpec("o/r", "x[1]*/a?.pt").allow_patterns() == ["x[[]1][*]/a[?].pt", "x[[]1][*]/*.json"]


def test_model_names(tmp_path, cache):
    from saekit.models.load import load_model

    assert hub_model_name("smollm2") == "smollm2" and hub_model_name("org/model") == "org/model"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    put_in_cache(cache, "org/model", tmp_path / "m", commit_of("m"))
    assert hub_model_name("hf:org/model") == "org/model"
    with pytest.raises(ModelLoadError, match=r"no snapshot of org/absent.*`hf download org/absent`"):
        load_model("hf:org/absent", dtype="float32")
    with pytest.raises(ModelLoadError, match=r"hf download org/model --revision v2 --local-dir DIR"):
        load_model("hf:org/model@v2")
    with pytest.raises(ModelLoadError, match=r"pass DIR/text_encoder"):
        hub_model_name("hf:org/model/text_encoder")


def test_outputs_about_a_hub_sae_go_to_the_saekit_cache_and_info_reads_it(tmp_path, cache, monkeypatch):
    from saekit.formats import output_folder
    from saekit.formats.describe import InfoConfig, describe

    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path / "saekit-cache"))
    root = tmp_path / "repo"
    local = _native(root)
    put_in_cache(cache, "org/native", root, commit_of("saekit"))
    out = output_folder("hf:org/native/layer_2@v1")
    assert out == tmp_path / "saekit-cache" / "hub" / "org--native" / "layer_2@v1"
    assert output_folder(local) == local  # a plain folder: unchanged
    info = describe(InfoConfig(path="hf:org/native/layer_2"))
    assert info["d_sae"] == D_SAE and info["format"] == "saekit"
