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


def test_deprecated_flag_spellings_are_translated_with_a_message(capsys):
    argv = ["--sae", "s", "--hook", "a", "--hook=b", "--hook-point", "c", "--", "--hook"]
    assert cli.renamed_flags("steer", argv) == [
        "--sae", "s", "--hook-point", "a", "--hook-point=b", "--hook-point", "c", "--", "--hook",
    ]  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("saekit steer: --hook is deprecated; use --hook-point") == 1
    assert cli.renamed_flags("analyze", ["real", "--model_dtype", "auto"]) == ["real", "--dtype", "auto"]
    assert "--model_dtype is deprecated; use --dtype" in capsys.readouterr().err
    # other verbs, and the current spellings, pass through silently
    assert cli.renamed_flags("train", ["--hook", "x"]) == ["--hook", "x"]
    assert cli.renamed_flags("steer", ["--hook-point", "x"]) == ["--hook-point", "x"]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "verb, old, new",
    [("steer", "--hook", "--hook-point"), ("analyze", "--model-dtype", "--dtype"),
     ("harvest", "--hook", "--hook-point"), ("eval", "--hook", "--hook-point")],  # fmt: skip
)
def test_the_dispatcher_hands_the_verb_the_new_spelling(monkeypatch, capsys, verb, old, new):
    import importlib

    seen = []
    module = importlib.import_module(cli.VERBS[verb][0])
    monkeypatch.setattr(module, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main([verb, old, "x"]) == 0
    assert seen == [[new, "x"]] and f"{old} is deprecated; use {new}" in capsys.readouterr().err


def test_analyze_takes_dtype_like_every_verb(capsys):
    from saekit.analysis.run import CompareArgs, RealArgs
    from saekit.commands.analyze import parse

    args = parse(["real", "--sae", "s", "--dtype", "bfloat16"])
    assert isinstance(args, RealArgs) and args.dtype == "bfloat16"
    assert isinstance(parse(["compare", "--sae", "s"]), CompareArgs)
    with pytest.raises(SystemExit):
        parse(["synthetic", "--help"])
    assert "--dtype" in capsys.readouterr().out


def test_steer_configs_name_the_hook_point_and_dtype_alike():
    import dataclasses

    from saekit.steer.image import ImageSteerConfig
    from saekit.steer.run import SteerConfig
    from saekit.steer.scale import ScaleConfig
    from saekit.sweep.config import SweepConfig

    for cfg in (SteerConfig, ImageSteerConfig, ScaleConfig):
        assert {"hook_point", "dtype"} <= {f.name for f in dataclasses.fields(cfg)}, cfg
    assert "dtype" in {f.name for f in dataclasses.fields(SweepConfig)}


def test_testbed_help_names_build_and_lora_only(capsys):
    for argv in (["testbed"], ["testbed", "--help"], ["testbed", "-h"]):
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: saekit testbed {build,lora}")
        assert "  build  " in out and "  lora   " in out and "--ci" in out


@pytest.mark.parametrize("argv", [["--out", "X"], ["--ci"], ["--config.sae-steps", "50"]])
def test_old_digits_testbed_invocation_is_refused_with_the_replacement(capsys, argv):
    assert cli.main(["testbed", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("saekit testbed: error:")
    assert "digits testbed" in err and "removed" in err and "saekit testbed build" in err


def test_testbed_dispatches_build_and_lora(capsys):
    for sub in ("build", "lora"):
        with pytest.raises(SystemExit) as exc:
            cli.main(["testbed", sub, "--help"])
        assert exc.value.code == 0
        assert f"saekit testbed {sub}" in capsys.readouterr().out
