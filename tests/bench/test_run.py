"""`saekit bench` end to end on the tiny Llama: files, table rows, seed groups, the CLI's flags."""

from __future__ import annotations

import dataclasses
import json

import pytest

from saekit import cli
from saekit.bench import BenchConfig, run_bench
from saekit.bench.absorption import AbsorptionConfig
from saekit.bench.core import CoreConfig
from saekit.bench.probing import ProbingConfig
from saekit.bench.run import sae_names
from saekit.errors import SAEConfigError, SaekitError
from saekit.sae import SAEConfig, build
from saekit.sae.config import Provenance

WORDS = (
    "apple bread cider dough eagle fable grape honey igloo jelly kite lemon mango nectar olive pearl quill "
    "radish salt tulip umber violet walnut xenon yarrow zebra"
).split()


class WordTokenizer:
    """Encodes like the suite's CharTokenizer; ids 4.. decode as a space and a word (for absorption)."""

    def __init__(self, chars):
        self.chars = chars
        self.all_special_ids, self.pad_token_id, self.bos_token_id = [0, 1], 1, 0

    def __call__(self, *args, **kwargs):
        return self.chars(*args, **kwargs)

    def decode(self, ids, skip_special_tokens=False) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return "".join(
            f" {WORDS[i % len(WORDS)]}{'s' * (i // len(WORDS))}" if i >= 4 else f"<{i}>" for i in ids
        )


def _save(tmp_path, name, arch="topk", seed=0, k=4):
    prov = Provenance(model="tiny-llama", hook_point="model.layers.0")
    cfg = SAEConfig(d_in=32, d_sae=64, arch=arch, k=k if arch == "topk" else None, provenance=prov)
    sae = build(cfg, seed=seed)
    path = tmp_path / name
    sae.save(path)
    return str(path)


def _cfg(saes, out, **kw):
    return BenchConfig(
        sae=tuple(saes), out=str(out), n_boot=50, quiet=True,
        core=CoreConfig(corpus="shakespeare", tokens=120, context_len=24, batch_size=4),
        probing=ProbingConfig(
            tasks=("testament", "direction"), ks=(1, 2, 5), n_train=12, n_test=6, max_tokens=16
        ),
        absorption=AbsorptionConfig(max_words=0, min_letters=1, test_fraction=0.3, batch_size=16),
        **kw,
    )  # fmt: skip


def test_bench_end_to_end_with_seed_groups(tiny_lm, char_tokenizer, tmp_path):
    saes = [_save(tmp_path / "topk", "seed0", seed=0), _save(tmp_path / "topk", "seed1", seed=1),
            _save(tmp_path, "relu", arch="relu")]  # fmt: skip
    lm = tiny_lm._replace(tokenizer=WordTokenizer(char_tokenizer))
    report = run_bench(_cfg(saes, tmp_path / "bench", group_seeds=True), loaded=lm)
    names = [s["name"] for s in report["saes"]]
    assert names == ["seed0", "seed1", "relu"]
    for row in report["saes"]:
        figs = row["figures"]
        for key in ("fvu", "ce_recovered", "kl", "probe_k1", "probe_k5", "absorption_rate", "split_latents"):
            assert key in figs, key
        assert set(row["timings_s"]) == {"core", "probing", "absorption"}
        assert 0.0 <= figs["probe_k1"].value <= 1.0
    assert report["seed_groups"][0]["members"] == ["seed0", "seed1"]  # relu is another configuration
    spread = report["seed_groups"][0]["spread"]["fvu"]
    assert spread["n"] == 2 and spread["sd"] >= 0
    files = report["files"]
    data = json.loads(open(files["json"]).read())
    assert data["saes"][0]["figures"]["fvu"]["lo"] <= data["saes"][0]["figures"]["fvu"]["hi"]
    md = open(files["markdown"]).read()
    assert (
        "| seed0 | topk | 64 | 4 |" in md
        and "raw activations (baseline)" in md
        and "Spread across seeds" in md
    )
    assert open(files["png"], "rb").read(4) == b"\x89PNG"


def test_bench_one_family_only(tiny_lm, tmp_path):
    report = run_bench(_cfg([_save(tmp_path, "a")], tmp_path / "b", metrics=("core",)), loaded=tiny_lm)
    assert "probe_k1" not in report["saes"][0]["figures"] and "fvu" in report["saes"][0]["figures"]


def test_bench_refuses_mixed_hooks_and_steering(tiny_lm, tmp_path):
    a = _save(tmp_path, "a")
    other = Provenance(model="tiny-llama", hook_point="model.layers.1")
    sae = build(SAEConfig(d_in=32, d_sae=64, arch="topk", k=4, provenance=other))
    sae.save(tmp_path / "b")
    with pytest.raises(SaekitError, match="one hook_point"):
        run_bench(_cfg([a, str(tmp_path / "b")], tmp_path / "out"), loaded=tiny_lm)
    with pytest.raises(SAEConfigError, match="saekit sweep"):
        _cfg([a], tmp_path / "out", steering=True)


def test_names_are_short_and_distinct():
    assert sae_names(("runs/x/topk/seed0", "runs/y/topk/seed0", "runs/z/relu")) == [
        "x/topk/seed0", "y/topk/seed0", "relu"]  # fmt: skip
    assert sae_names(("a/relu", "b/topk")) == ["relu", "topk"]


def test_cli_lists_bench_and_parses_nested_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--sae", "--group-seeds", "--core.tokens", "--probing.ks", "--absorption.prefix"):
        assert flag in text
    import tyro

    cfg = tyro.cli(
        BenchConfig, args=["--sae", "a", "b", "--probing.ks", "1", "3", "--metrics", "core", "probing"]
    )
    assert cfg.sae == ("a", "b") and cfg.probing.ks == (1, 3) and cfg.metrics == ("core", "probing")
    assert dataclasses.asdict(cfg)["core"]["tokens"] == 4096
