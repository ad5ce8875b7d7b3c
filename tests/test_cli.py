"""The `saekit` dispatcher, called in-process."""

from __future__ import annotations

import json

import pytest

from saekit import cli
from saekit.sae import Provenance, SAEConfig, build


def test_help_lists_every_verb(capsys):
    for argv in (["--help"], [], ["-h"], ["help"]):
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: saekit <verb>")
        for verb in cli.VERBS:
            assert f"  {verb}" in out


def test_version(capsys):
    from saekit import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"saekit {__version__}"


@pytest.mark.parametrize("typo, suggestion", [("trian", "train"), ("harvset", "harvest"), ("inf", "info")])
def test_unknown_verb_suggests_the_closest(capsys, typo, suggestion):
    assert cli.main([typo]) == 2
    err = capsys.readouterr().err
    assert f"unknown verb {typo!r}" in err and f"did you mean {suggestion!r}" in err


def test_unknown_verb_without_close_match(capsys):
    assert cli.main(["zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert "unknown verb 'zzzzzz'" in err and "did you mean" not in err and "verbs:" in err


def test_info_on_sae_folder(tmp_path, capsys):
    cfg = SAEConfig(
        d_in=8,
        d_sae=24,
        arch="topk",
        k=4,
        provenance=Provenance(model="smollm2", hook_point="model.layers.3", layer=3),
    )
    sae = build(cfg, seed=0)
    sae.input_scale.fill_(0.5)
    sae.save(tmp_path / "sae")
    assert cli.main(["info", str(tmp_path / "sae")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "sae" and info["arch"] == "topk"
    assert (info["d_in"], info["d_sae"], info["k"]) == (8, 24, 4)
    assert info["input_scale"] == 0.5
    assert info["provenance"]["hook_point"] == "model.layers.3"


def test_info_help_and_errors(tmp_path, capsys):
    assert cli.main(["info", "--help"]) == 0
    assert "usage: saekit info" in capsys.readouterr().out
    assert cli.main(["info", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("saekit info: error:") and "missing" in err
    # a corrupt SAE folder is a clean error, not a traceback
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{oops")
    assert cli.main(["info", str(tmp_path / "bad")]) == 1
    assert "not valid JSON" in capsys.readouterr().err
