"""`saekit analyze real --html`: the real analysis pipeline feeds the browser (tiny store, no model)."""

import json
import re

import torch
from safetensors.torch import save_file

import saekit
from saekit.commands.analyze import main as analyze_main
from saekit.sae import SAEConfig, build
from saekit.viz.browser.neighbours import nearest_by_cosine


def _store(folder, n=240, d=8):
    g = torch.Generator().manual_seed(0)
    folder.mkdir(parents=True)
    tensors = {
        "acts": torch.randn(n, d, generator=g),
        "doc_id": (torch.arange(n) // 40).int(),
        "position": (torch.arange(n) % 40).int(),
        "token_id": torch.randint(0, 30, (n,), generator=g).int(),
    }
    save_file(tensors, str(folder / "shard_00000.safetensors"))
    manifest = {
        "schema_version": 1,
        "complete": True,
        "model": "tiny",
        "hook_point": "model.layers.0",
        "d": d,
        "count": n,
        "dtype": "float32",
        "shards": [{"file": "shard_00000.safetensors", "count": n}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _data(path):
    return json.loads(re.fullmatch(r'saekitData\("\w+","\w+",(.*)\);\n', path.read_text(), re.S).group(1))


def test_analyze_real_html_builds_the_browser_with_sae_neighbours(tmp_path, capsys):
    store = _store(tmp_path / "store")
    sae_dir = build(SAEConfig(d_in=8, d_sae=16, arch="topk", k=3), seed=0).save(tmp_path / "sae")
    out = tmp_path / "analysis"
    argv = ["real", "--sae", str(sae_dir), "--store", str(store), "--out", str(out), "--features", "top:3"]
    assert analyze_main([*argv, "--no-model", "--no-plots", "--quiet", "--n-top", "4", "--html"]) == 0
    assert f"file://{(out / 'browser' / 'index.html').resolve()}" in capsys.readouterr().out
    doc = json.loads((out / "analysis.json").read_text())
    meta = _data(out / "browser" / "data" / "meta.js")
    assert meta["analysed"] == sorted(int(k) for k in doc["features"])
    pages = _data(out / "browser" / "data" / "f_0.js")
    want = nearest_by_cosine(saekit.load(str(sae_dir)).decoder_directions(), meta["analysed"], k=8)
    for k, page in pages.items():
        assert page["top_examples"] == doc["features"][k]["top_examples"]
        assert [n["feature"] for n in page["nearest"]] == [j for j, _ in want[int(k)]]
