"""`analyze real` straight from a model + corpus equals `analyze real` on a harvested store of the same
tokens (the store made by `saekit harvest`, an independent code path), and the CLI takes --corpus
with a foreign-format SAE."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from saekit.analysis.corpus_source import CorpusConfig, CorpusSource
from saekit.analysis.real import RealConfig, analyze_source, analyze_store
from saekit.sae import SAEConfig, build

WORDS = (
    "the cat dog sat on mat a big red ran to house and then it was happy sad green tree".split()
)  # as conftest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    g = torch.Generator().manual_seed(3)
    for i, n in enumerate([37, 9, 52, 23]):  # doc 1 is shorter than one window's minimum: skipped
        words = [WORDS[j] for j in torch.randint(0, len(WORDS), (n,), generator=g).tolist()]
        (folder / f"doc{i}.txt").write_text(" ".join(words))
    return folder


@pytest.fixture(scope="module")
def lm(tiny_lm_folder):
    from saekit.models import load_model

    return load_model(str(tiny_lm_folder), dtype="float32", quiet=True)


def _harvest(tiny_lm_folder, corpus, out, lm):
    from saekit.data.harvest import LMHarvestConfig, harvest

    cfg = LMHarvestConfig(model=str(tiny_lm_folder), hook_point="model.layers.0", corpus=str(corpus),
                        tokens=10**6,
                        context_len=16, batch_size=3, dtype="float32", store_dtype="float32",
                        max_norm_ratio=0.0, out=out, quiet=True)  # fmt: skip
    return harvest(cfg, loaded=lm)


def test_corpus_source_equals_harvested_store(tmp_path, tiny_lm_folder, corpus, lm):
    store = _harvest(tiny_lm_folder, corpus, tmp_path / "store", lm)
    sae = build(SAEConfig(d_in=32, d_sae=24, arch="topk", k=4), seed=0).eval()
    cfg = RealConfig(n_top=5, batch_size=50, context_before=6, context_after=2)
    src = CorpusSource(
        lm, "model.layers.0", CorpusConfig(corpus=str(corpus), context_len=16, contexts_per_batch=2)
    )
    a = analyze_store(sae, store.folder, "0-23", cfg)
    b = analyze_source(sae, src, "0-23", cfg)
    assert b["source"]["kind"] == "corpus" and b["summary"]["n_rows"] == a["summary"]["n_rows"] == len(store)
    np.testing.assert_allclose(b["all_features"]["frequency"], a["all_features"]["frequency"])
    np.testing.assert_allclose(b["all_features"]["max"], a["all_features"]["max"], rtol=1e-5)
    for k, fa in a["features"].items():
        fb = b["features"][k]
        assert len(fa["top_examples"]) == len(fb["top_examples"])
        for ea, eb in zip(fa["top_examples"], fb["top_examples"]):
            assert (ea["row"], ea["doc_id"], ea["position"], ea["token_id"]) == (
                eb["row"], eb["doc_id"], eb["position"], eb["token_id"],
            )  # fmt: skip
            assert abs(ea["activation"] - eb["activation"]) < 1e-5
            assert ea["context"]["token_ids"] == eb["context"]["token_ids"]
            np.testing.assert_allclose(ea["context"]["activations"], eb["context"]["activations"], atol=1e-5)
    # the document tokens the maximiser starts from are the store's token table
    assert src.tokens(2, 3, 9).tolist() == store.tokens(2, 3, 9).tolist()


def test_row_limit_and_read_any_order(corpus, lm):
    src = CorpusSource(lm, "model.layers.0", CorpusConfig(corpus=str(corpus), context_len=16, tokens=40))
    acts = torch.cat([x for x, _ in src.batches(0)])
    assert len(src) == 40 == acts.shape[0]
    rows = [39, 0, 17, 17, 5]
    torch.testing.assert_close(src.read(rows).acts, acts[rows])


def _saelens_sae(folder, tiny_lm_folder):
    """A SAELens-format topk SAE (cfg.json + sae_weights.safetensors) on the tiny LM's layer 0."""
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    t = {"W_enc": torch.randn(32, 24, generator=g), "b_enc": torch.zeros(24),
         "W_dec": torch.randn(24, 32, generator=g), "b_dec": torch.zeros(32)}  # fmt: skip
    save_file(t, str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": "topk", "k": 4, "d_in": 32, "d_sae": 24, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
           "metadata": {"sae_lens_version": "6.5.1", "model_name": str(tiny_lm_folder),
                        "hook_name": "model.layers.0"}}  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def test_cli_real_from_corpus_with_saelens_sae(tmp_path, tiny_lm_folder, corpus):
    from saekit.commands.analyze import main

    sae = _saelens_sae(tmp_path / "saelens", tiny_lm_folder)
    out = tmp_path / "out"
    argv = ["real", "--sae", str(sae), "--model", str(tiny_lm_folder), "--hook-point", "model.layers.0",
            "--corpus", str(corpus), "--context-len", "16", "--features", "0-10", "--n-top", "3",
            "--out", str(out), "--quiet", "--no-plots"]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads((out / "analysis.json").read_text())
    assert doc["source"]["kind"] == "corpus" and doc["source"]["corpus"] == str(corpus)
    assert sorted(int(k) for k in doc["features"]) == list(range(11))
    ex = next(e for f in doc["features"].values() for e in f["top_examples"])
    assert ex["token"] in ["[UNK]", *WORDS] and ex["context"]["tokens"][ex["context"]["focus"]] == ex["token"]
